import { isAbsolute, resolve } from 'node:path';
import { loadConfig, type Config } from '../config/index.js';
import { createKeyFile, kmsProviderFor, type KmsProvider } from '../crypto/index.js';
import { ConfigError, errorMessage, KeyError } from '../errors.js';
import { archiveSystemIdentifier } from '../pipeline/key-context.js';
import { archiveKeyUsage, type KeyUsage } from '../pipeline/key-usage.js';
import { openStore } from '../store/index.js';
import { commandContext, commandLogger, type GlobalOptions } from './context.js';
import { EXIT } from './exit-codes.js';
import { reportError } from './report.js';
import { CREATED_BY } from '../version.js';
import { scanPlaintext, writeAllowList } from '../archive/allow-plaintext.js';
import { ALLOWLIST_KEY } from '../pipeline/plaintext-policy.js';

/** walship key create --file F: a new 256-bit key, mode 0600, never overwriting. */
export async function runKeyCreate(file: string): Promise<number> {
  const log = commandLogger('key');
  const path = isAbsolute(file) ? file : resolve(file);
  try {
    const id = await createKeyFile(path);
    process.stdout.write(`created key ${id} in ${path}\nset WALSHIP_ENCRYPTION=keyfile and WALSHIP_KEY_FILE=${path}; keep a copy of this file somewhere safe\n`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return EXIT.ERROR;
  }
}

function kmsConfig(globals: GlobalOptions, what: string): Config {
  const config = loadConfig({ configFile: globals.config });
  if (config.encryption !== 'kms') {
    throw new ConfigError(`walship key ${what} manages KMS data keys, but WALSHIP_ENCRYPTION is ${config.encryption}`, {
      hint:
        config.encryption === 'keyfile'
          ? 'to rotate a key file: walship key create --file NEW, then WALSHIP_KEY_FILE=NEW,OLD (the first encrypts, all decrypt)'
          : 'set WALSHIP_ENCRYPTION=kms and WALSHIP_KMS_KEY_ID',
    });
  }
  return config;
}

/**
 * walship key rotate: a new data key now. The next push on this host
 * encrypts with it; objects already archived keep theirs and stay readable.
 */
export async function runKeyRotate(globals: GlobalOptions): Promise<number> {
  const log = commandLogger('key');
  try {
    const config = kmsConfig(globals, 'rotate');
    log.level = config.logLevel;
    const kms = kmsProviderFor(config, (m) => log.warn(m));
    const systemIdentifier = await archiveSystemIdentifier(await openStore(config));
    if (systemIdentifier === undefined) {
      throw new KeyError(`the archive at ${config.store.url} has no walship.json yet, so there is no cluster to bind a data key to`, {
        hint: 'the first push creates the first data key; or run this in the data directory (it reads global/pg_control)',
      });
    }
    const before = await kms.status(systemIdentifier);
    const dk = await kms.rotate(systemIdentifier);
    const prev = before.cache.status === 'ok' ? `; previous data key ${before.cache.key.id} (created ${iso(before.cache.key.createdAt)}, ${before.cache.uses} files)` : '';
    process.stdout.write(`new data key ${dk.id} under ${dk.keyArn} for system ${systemIdentifier}${prev}\n`);
    log.info({ dataKey: dk.id, kmsKeyId: dk.keyArn }, `rotated the KMS data key: ${dk.id}`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

interface KmsKeyState {
  readonly key: string;
  /** The key's ARN as KMS describes it (the key itself when it could not be described). */
  readonly arn: string;
  readonly state: string;
  readonly deletionDate?: string | undefined;
  readonly error?: string | undefined;
}

/**
 * walship key status [--json] [--no-objects]: the current data key (id,
 * age, next rotation), the state of the KMS keys involved, and which keys
 * protect the archive's objects. Warnings name anything that threatens
 * restorability (a KMS key disabled or pending deletion that still protects
 * objects); monitoring can read them from --json.
 */
export async function runKeyStatus(globals: GlobalOptions, opts: { json?: boolean; objects?: boolean }): Promise<number> {
  const log = commandLogger('key');
  try {
    const config = loadConfig({ configFile: globals.config });
    log.level = config.logLevel;
    const kms = kmsProviderFor(config, (m) => log.warn(m));
    const now = Date.now();
    const store = await openStore(config);
    const systemIdentifier = await archiveSystemIdentifier(store);
    const dataKey = config.encryption === 'kms' && systemIdentifier !== undefined ? await kms.status(systemIdentifier) : undefined;
    const usage = opts.objects === false ? undefined : await archiveKeyUsage(store);

    const kmsKeys = new Set<string>();
    if (config.encryption === 'kms' && config.kms.keyId) kmsKeys.add(config.kms.keyId);
    for (const g of usage?.groups ?? []) if (g.provider === 'kms') kmsKeys.add(g.key);
    // An alias and the ARN it resolves to are one key: show it once.
    const described = await Promise.all([...kmsKeys].map((k) => describe(kms, k)));
    const states = described.filter((s, i) => described.findIndex((o) => o.arn === s.arn) === i);

    const warnings: string[] = [];
    for (const s of states) {
      const protects = usage?.groups.filter((g) => g.provider === 'kms' && g.key === s.arn).reduce((n, g) => n + g.objects, 0) ?? 0;
      if (s.state !== 'Enabled' && s.state !== 'unknown') {
        warnings.push(
          `KMS key ${s.key} is ${s.state}${s.deletionDate ? ` (deletion on ${s.deletionDate})` : ''}` +
            `${protects ? `, and it protects ${protects} archived files: they cannot be restored without it` : ''}`,
        );
      }
    }
    for (const u of usage?.unreadable ?? []) warnings.push(`the header of ${u.key} cannot be read: ${u.error}`);

    const report = {
      encryption: config.encryption,
      kmsKeyId: config.kms.keyId ?? null,
      systemIdentifier: systemIdentifier ?? null,
      currentDataKey: dataKeyReport(dataKey, now),
      kmsKeys: states,
      archive: usage ? { store: config.store.url, objects: usage.objects, keys: usage.groups } : null,
      warnings,
    };
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : human(report, now));
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}

async function describe(kms: KmsProvider, key: string): Promise<KmsKeyState> {
  try {
    const d = await kms.describe(key);
    return { key, arn: d.arn, state: d.state, ...(d.deletionDate ? { deletionDate: d.deletionDate.toISOString() } : {}) };
  } catch (err) {
    return { key, arn: key, state: 'unknown', error: errorMessage(err) };
  }
}

function dataKeyReport(s: Awaited<ReturnType<KmsProvider['status']>> | undefined, now: number) {
  if (!s) return null;
  if (s.cache.status !== 'ok') {
    return { state: s.cache.status === 'absent' ? 'none yet: the next push creates one' : `unusable: ${s.cache.why}`, id: null };
  }
  const k = s.cache.key;
  return {
    state: s.current ? 'current' : 'due for rotation: the next push replaces it',
    id: k.id,
    kmsKeyArn: k.keyArn,
    configuredKeyId: k.configuredKeyId,
    systemIdentifier: k.context['walship:system-identifier'] ?? null,
    createdAt: iso(k.createdAt),
    ageSeconds: Math.round((now - k.createdAt) / 1000),
    files: s.cache.uses,
    rotateAt: s.rotateAt !== undefined ? iso(s.rotateAt) : null,
    filesLeft: s.objectsLeft ?? null,
  };
}

function human(r: {
  encryption: string;
  kmsKeyId: string | null;
  systemIdentifier: string | null;
  currentDataKey: ReturnType<typeof dataKeyReport>;
  kmsKeys: KmsKeyState[];
  archive: { store: string; objects: number; keys: KeyUsage['groups'] } | null;
  warnings: string[];
}, now: number): string {
  const out: string[] = [];
  out.push(`encryption: ${r.encryption}${r.kmsKeyId ? ` (WALSHIP_KMS_KEY_ID ${r.kmsKeyId})` : ''}`);
  out.push(`cluster: ${r.systemIdentifier ?? 'unknown (no walship.json in the archive yet)'}`);
  const d = r.currentDataKey;
  if (d && d.id === null) out.push(`current data key: ${d.state}`);
  else if (d && 'createdAt' in d) {
    out.push(`current data key: ${d.id} under ${d.kmsKeyArn}`);
    out.push(`  created ${d.createdAt} (${span(d.ageSeconds * 1000)} ago), ${d.files} files encrypted, ${d.state}`);
    const rotate = d.rotateAt ? `${d.rotateAt} (in ${span(Date.parse(d.rotateAt) - now)})` : 'never by age';
    out.push(`  next rotation: ${rotate}${d.filesLeft !== null ? ` or after ${d.filesLeft} more files` : ''}`);
  }
  for (const s of r.kmsKeys) out.push(`KMS key ${s.arn}${s.key !== s.arn ? ` (${s.key})` : ''}: ${s.state}${s.deletionDate ? `, deletion on ${s.deletionDate}` : ''}${s.error ? ` (${s.error})` : ''}`);
  if (r.archive) {
    out.push(`archive ${r.archive.store}: ${r.archive.objects} files`);
    for (const g of r.archive.keys) {
      const what = g.provider === 'none' ? 'not encrypted' : g.provider === 'kms' ? `kms ${g.key} data key ${g.dataKey}` : `${g.provider} ${g.key}`;
      out.push(`  ${what}: ${g.objects} files, ${g.first} … ${g.last}`);
    }
  }
  for (const w of r.warnings) out.push(`WARNING: ${w}`);
  return `${out.join('\n')}\n`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * walship key allow-plaintext [--dry-run]: when encryption is turned on for
 * an archive that holds unencrypted objects, records those objects (name and
 * BLAKE3 of the verified content) in an encrypted allow-list, the only way
 * fetch, cat and verify will read them from then on. Exit 0 written (or
 * nothing to record, or dry run), 1 refused (a plaintext object failed
 * verification, or a list already exists), 2 configuration, 3 other failure.
 */
export async function runKeyAllowPlaintext(globals: GlobalOptions, opts: { dryRun?: boolean }): Promise<number> {
  const log = commandLogger('key');
  try {
    const { store, keys } = await commandContext(globals, log);
    const scan = await scanPlaintext(store, keys);
    const out: string[] = [`archive ${scan.store} (system ${scan.systemIdentifier}): ${scan.files.length} plaintext files verified, ${scan.encrypted} encrypted`];
    for (const f of scan.files) out.push(`  ${f.name}  blake3 ${f.blake3}`);
    for (const f of scan.failed) out.push(`  REFUSED ${f.key}: ${f.message}`);
    if (scan.existing) {
      out.push(`the archive already has a plaintext allow-list (${ALLOWLIST_KEY}, ${scan.existing.files.length} files, made ${scan.existing.createdAt}); it is never replaced`);
      process.stdout.write(`${out.join('\n')}\n`);
      return opts.dryRun ? EXIT.OK : EXIT.FAILED;
    }
    if (scan.failed.length > 0) {
      out.push(`${scan.failed.length} plaintext objects failed verification: nothing written. Repair or remove them (a forged or damaged object must not be allowed), then run this again`);
      process.stdout.write(`${out.join('\n')}\n`);
      return EXIT.FAILED;
    }
    if (scan.files.length === 0) {
      out.push('no plaintext objects: nothing to allow, nothing written');
    } else if (opts.dryRun) {
      out.push(`dry run: would write ${ALLOWLIST_KEY} listing these ${scan.files.length} files`);
    } else {
      await writeAllowList(store, keys, scan, CREATED_BY);
      out.push(`wrote ${ALLOWLIST_KEY} (encrypted with ${keys?.description ?? 'none'}): only these plaintext files, with exactly this content, will be read`);
      log.info({ key: ALLOWLIST_KEY, files: scan.files.length }, `recorded ${scan.files.length} plaintext files in the allow-list`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
    return EXIT.OK;
  } catch (err) {
    reportError(log, err);
    return err instanceof ConfigError ? EXIT.USAGE : EXIT.ERROR;
  }
}
