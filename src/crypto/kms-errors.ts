import { KeyError, KeyUnavailableError, type WalshipError } from '../errors.js';
import { maskCredentials } from '../config/load.js';

/**
 * Maps an AWS KMS (or network) failure to walship's errors. The split that
 * matters is retryable or not: a KMS that is unreachable, slow or throttling
 * (KeyUnavailableError) is retried by fetch like a store outage; a refusal
 * (access denied, no such key, key disabled, ciphertext or context that does
 * not match) is a KeyError that retrying cannot fix. Neither ever reads as
 * "not found". Only names are inspected, so this module loads no SDK.
 */

export interface KmsErrorContext {
  /** The KMS operation, e.g. GenerateDataKey. */
  readonly op: string;
  /** The key as configured or as the object names it. */
  readonly keyId: string;
  readonly region: string;
  readonly endpoint: string | undefined;
  readonly file?: string | undefined;
}

const UNAVAILABLE = new Set([
  'KMSInternalException',
  'DependencyTimeoutException',
  'ThrottlingException',
  'LimitExceededException',
  'KeyUnavailableException',
  'ServiceUnavailableException',
  'InternalFailure',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'AbortError',
]);

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

interface AwsLikeError {
  readonly name?: string;
  readonly message?: string;
  readonly code?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

export function kmsError(ctx: KmsErrorContext, err: unknown): WalshipError {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as AwsLikeError;
  const name = e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const code = e.code ?? (e as { cause?: AwsLikeError }).cause?.code;
  // An endpoint URL may carry credentials (user:password@): never log them.
  const where = ctx.endpoint !== undefined ? maskCredentials(ctx.endpoint) : `KMS in ${ctx.region}`;
  const detail = `${name}${status ? ` (HTTP ${status})` : ''}${code && code !== name ? ` ${code}` : ''}: ${e.message ?? ''}`.trim();
  const message = `KMS ${ctx.op} with key ${ctx.keyId} failed: ${detail}`;
  const base = { file: ctx.file, cause: err };

  if (UNAVAILABLE.has(name) || (code !== undefined && NETWORK_CODES.has(code)) || (status !== undefined && (status >= 500 || status === 429))) {
    return new KeyUnavailableError(message, { ...base, hint: `${where} is unreachable, slow or throttling; nothing was written unencrypted` });
  }
  return new KeyError(message, { ...base, hint: hintFor(name, ctx) });
}

function hintFor(name: string, ctx: KmsErrorContext): string {
  switch (name) {
    case 'AccessDeniedException':
      return (
        `the AWS identity walship runs as (the PostgreSQL OS user's credentials) needs kms:${ctx.op} on ${ctx.keyId}: ` +
        'check the IAM policy and the key policy; a key of another account must allow this account in its key policy'
      );
    case 'NotFoundException':
    case 'InvalidArnException':
      return `no such KMS key in region ${ctx.region}: check WALSHIP_KMS_KEY_ID and WALSHIP_KMS_REGION (a key of another account must be given by its full ARN)`;
    case 'DisabledException':
    case 'KMSInvalidStateException':
      return `the KMS key is disabled or pending deletion: enable it (or cancel the deletion); objects it wrapped cannot be read meanwhile`;
    case 'InvalidCiphertextException':
    case 'IncorrectKeyException':
      return 'KMS refused the wrapped data key: the object header was altered, or the object was copied from another archive (the encryption context names another cluster)';
    case 'InvalidKeyUsageException':
      return 'WALSHIP_KMS_KEY_ID must name a symmetric ENCRYPT_DECRYPT KMS key';
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'IncompleteSignature':
    case 'ExpiredTokenException':
    case 'CredentialsProviderError':
      return 'the AWS credentials are missing, wrong or expired: set AWS_* variables, a profile, or an instance role for the PostgreSQL OS user';
    default:
      return 'check WALSHIP_KMS_KEY_ID, WALSHIP_KMS_REGION and the AWS credentials';
  }
}
