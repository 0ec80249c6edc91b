/**
 * The Prometheus text exposition format (version 0.0.4), as node_exporter's
 * textfile collector reads it: one HELP and one TYPE line per family, then
 * its samples. Every sample of a family carries the same label names (the
 * collector rejects a file otherwise).
 */
export type MetricType = 'gauge' | 'counter' | 'histogram';

export interface Sample {
  /** Appended to the family name: '_bucket', '_sum', '_count' for histograms. */
  readonly suffix?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return Number.isInteger(v) ? v.toFixed(0) : String(v);
}

function renderLabels(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(k)}`);
      return `${k}="${escapeLabelValue(v)}"`;
    });
  return parts.length ? `{${parts.join(',')}}` : '';
}

/**
 * Renders families (skipping those without samples) with `common` labels on
 * every sample. Empty label values are left out, which Prometheus treats the
 * same as an absent label.
 */
export function renderText(families: readonly MetricFamily[], common: Readonly<Record<string, string>> = {}): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    if (!METRIC_NAME.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
    if (seen.has(f.name)) throw new Error(`metric family ${f.name} rendered twice`);
    seen.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      out.push(`${f.name}${s.suffix ?? ''}${renderLabels({ ...common, ...s.labels })} ${formatValue(s.value)}`);
    }
  }
  return `${out.join('\n')}\n`;
}
