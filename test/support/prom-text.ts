/**
 * A strict reader of the Prometheus text format for the metrics tests: every
 * line must be a HELP/TYPE comment or a complete sample of the family the
 * last TYPE line declared, and the text must end with a newline. A torn read
 * of a half-written file fails here.
 */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromText {
  readonly families: ReadonlyMap<string, { readonly type: string; readonly help: string }>;
  readonly samples: readonly PromSample[];
  /** The value of `name` whose labels include `match`; throws unless exactly one sample matches. */
  value(name: string, match?: Readonly<Record<string, string>>): number;
  /** Like value(), but undefined when no sample matches. */
  maybe(name: string, match?: Readonly<Record<string, string>>): number | undefined;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const v = Number(s);
  if (s === '' || Number.isNaN(v)) throw new Error(`bad sample value "${s}"`);
  return v;
}

export function parsePromText(text: string): PromText {
  if (!text.endsWith('\n')) throw new Error(`text does not end with a newline (${text.length} bytes): torn read?`);
  const families = new Map<string, { type: string; help: string }>();
  const samples: PromSample[] = [];
  let current: string | undefined;
  let help = '';
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      help = m[2]!;
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter|histogram|summary|untyped)$/.exec(line))) {
      current = m[1]!;
      if (families.has(current)) throw new Error(`family ${current} declared twice`);
      families.set(current, { type: m[2]!, help });
      continue;
    }
    m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    if (!current || !(name === current || name.startsWith(`${current}_`))) throw new Error(`sample ${name} outside its family (current ${current})`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    samples.push({ name, labels, value: parseValue(m[4]!) });
  }
  const find = (name: string, match: Readonly<Record<string, string>> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  return {
    families,
    samples,
    value(name, match) {
      const found = find(name, match);
      if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(match ?? {})}`);
      return found[0]!.value;
    },
    maybe(name, match) {
      const found = find(name, match);
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(match ?? {})}`);
      return found[0]?.value;
    },
  };
}
