/**
 * How an object's key is found again. Stored (as JSON) in the object header,
 * which is authenticated, so none of it can be altered without detection.
 * Nothing here is secret.
 */
export type KeyDescriptor = KeyfileKeyDescriptor | KmsKeyDescriptor;

export interface KeyfileKeyDescriptor {
  readonly provider: 'keyfile';
  /** Identifier of the master key (derived from the key, so it cannot lie). */
  readonly id: string;
  /** Per-object random salt (base64): makes every object key unique. */
  readonly salt: string;
}

/**
 * Envelope encryption with AWS KMS: the object key is derived from a data
 * key that KMS generated, and the data key travels with the object, wrapped
 * (encrypted) by the KMS key. Any reader that may call kms:Decrypt on
 * `kmsKeyId` with `context` can recover it; nobody else can.
 */
export interface KmsKeyDescriptor {
  readonly provider: 'kms';
  /** Identifier of the data key: a hash of `wrapped` (groups objects per data key; safe to log). */
  readonly id: string;
  /** The KMS key that wrapped the data key, as KMS reported it (a key ARN). */
  readonly kmsKeyId: string;
  /** The data key as KMS encrypted it (CiphertextBlob, base64). */
  readonly wrapped: string;
  /** The KMS encryption context the data key is bound to; a reader must present exactly this. */
  readonly context: Readonly<Record<string, string>>;
  /** Per-object random salt (base64): makes every object key unique. */
  readonly salt: string;
}

export interface ObjectKey {
  /** 32-byte AES-256 key for this one object. */
  readonly key: Buffer;
  readonly descriptor: KeyDescriptor;
}

/**
 * What an object key is for. `systemIdentifier` is the cluster the archive
 * is bound to (walship.json; for a segment, its own header): KMS data keys
 * are bound to it through the encryption context, so an object copied into
 * another cluster's archive cannot be decrypted there. Undefined when
 * nothing says which cluster it is (then a reader trusts the header's
 * descriptor, which is still authenticated).
 */
export interface KeyContext {
  /** WAL file name, for messages. */
  readonly file: string;
  readonly systemIdentifier: string | undefined;
}

/**
 * A source of object keys. Push asks for a fresh key per object; fetch asks
 * for the key an existing object names.
 */
export interface KeyProvider {
  /** Short description for logs (never key material). */
  readonly description: string;
  /**
   * True when WALSHIP_ENCRYPTION is not none. Readers then refuse objects
   * stored without encryption (src/pipeline/plaintext-policy.ts): a bucket
   * writer can forge those. Undefined counts as false.
   */
  readonly encrypts?: boolean;
  newObjectKey(context: KeyContext): Promise<ObjectKey>;
  objectKeyFor(descriptor: KeyDescriptor, context: KeyContext): Promise<Buffer>;
}
