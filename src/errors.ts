/**
 * Every failure walship expects has a class here with a stable `code`.
 * The CLI maps classes to exit codes in one place (src/cli/exit-codes.ts);
 * nothing below the CLI decides how the process ends.
 */

export interface ErrorContext {
  /** WAL file name the operation was about. */
  readonly file?: string;
  /** Store key, without credentials. */
  readonly key?: string;
  /** What the operator should check or do next. */
  readonly hint?: string;
  readonly cause?: unknown;
}

export abstract class WalshipError extends Error {
  abstract readonly code: string;
  readonly file: string | undefined;
  readonly key: string | undefined;
  readonly hint: string | undefined;

  constructor(message: string, ctx: ErrorContext = {}) {
    super(message, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = new.target.name;
    this.file = ctx.file;
    this.key = ctx.key;
    this.hint = ctx.hint;
  }
}

/** A setting is missing or malformed. */
export class ConfigError extends WalshipError {
  readonly code = 'CONFIG';
}

/** Bad arguments: a path or name PostgreSQL would never pass. */
export class InvalidInputError extends WalshipError {
  readonly code = 'INVALID_INPUT';
}

/** The store could not be reached or refused the request (network, auth, disk). */
export class StoreUnavailableError extends WalshipError {
  readonly code = 'STORE_UNAVAILABLE';
}

/** The store answered, but there is no walship archive there. */
export class ArchiveMissingError extends WalshipError {
  readonly code = 'ARCHIVE_MISSING';
}

/** An archived object is damaged: bad header, failed authentication, checksum mismatch. */
export class CorruptObjectError extends WalshipError {
  readonly code: string = 'OBJECT_CORRUPT';
}

/**
 * Encryption is on, but an object is stored unencrypted and is not on the
 * archive's authenticated plaintext allow-list: anyone who can write to the
 * store could have put it there. A kind of corrupt object (never "not
 * found", never retried), with its own code so that it is recognisable.
 */
export class UnencryptedObjectError extends CorruptObjectError {
  override readonly code: string = 'OBJECT_NOT_ENCRYPTED';
}

/** A key needed to decrypt is not available, or a key file is unusable. */
export class KeyError extends WalshipError {
  readonly code = 'KEY';
}

/**
 * The key service (AWS KMS) could not be reached, timed out or throttled:
 * the key may well be usable a moment later, so fetch retries it like a store
 * outage, and it never reads as "not found".
 */
export class KeyUnavailableError extends WalshipError {
  readonly code = 'KEY_UNAVAILABLE';
}

/** Another walship process is doing the same exclusive job on this cluster now (a second `walship backup`). */
export class BusyError extends WalshipError {
  readonly code = 'BUSY';
}

/** The same name is archived with different content: split brain or a second cluster. */
export class ArchiveConflictError extends WalshipError {
  readonly code = 'ARCHIVE_CONFLICT';
}

/** The WAL belongs to another cluster than the one the archive is bound to. */
export class ForeignClusterError extends WalshipError {
  readonly code = 'FOREIGN_CLUSTER';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A local file could not be read or written (the segment, the restore target, a full disk). */
export class LocalIoError extends WalshipError {
  readonly code = 'LOCAL_IO';
}

/**
 * The store holds another archive than the one this data directory archives
 * to (re-created, another mount, another bucket behind the same URL): never
 * treated as a fresh start. `walship init --rebind` moves on deliberately.
 */
export class ArchiveChangedError extends WalshipError {
  readonly code = 'ARCHIVE_CHANGED';
}

/** An error as another walship process reported it (code, message, hint), e.g. on its stdout as JSON. */
export interface ReportedError {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
  readonly file?: string;
  readonly key?: string;
}

type ErrorClass = new (message: string, ctx?: ErrorContext) => WalshipError;
const CLASSES: readonly ErrorClass[] = [
  ConfigError,
  InvalidInputError,
  StoreUnavailableError,
  ArchiveMissingError,
  CorruptObjectError,
  UnencryptedObjectError,
  KeyError,
  KeyUnavailableError,
  BusyError,
  ArchiveConflictError,
  ForeignClusterError,
  LocalIoError,
  ArchiveChangedError,
];
let byCode: Map<string, ErrorClass> | undefined;

/**
 * The error of the class the other process threw, so that exit codes and
 * the drill's "cannot be restored" / "could not run" split come out as if
 * the work had been done here. An unknown code becomes a LocalIoError.
 */
export function errorFromReport(r: ReportedError): WalshipError {
  byCode ??= new Map(CLASSES.map((C) => [new C('').code, C]));
  const C = byCode.get(r.code) ?? LocalIoError;
  return new C(r.message, { hint: r.hint, file: r.file, key: r.key });
}
