/**
 * How an object's key is found again. Stored (as JSON) in the object header,
 * which is authenticated, so none of it can be altered without detection.
 * Nothing here is secret.
 */
export type KeyDescriptor = KeyfileKeyDescriptor;

export interface KeyfileKeyDescriptor {
  readonly provider: 'keyfile';
  /** Identifier of the master key (derived from the key, so it cannot lie). */
  readonly id: string;
  /** Per-object random salt (base64): makes every object key unique. */
  readonly salt: string;
}

export interface ObjectKey {
  /** 32-byte AES-256 key for this one object. */
  readonly key: Buffer;
  readonly descriptor: KeyDescriptor;
}

/**
 * A source of object keys. Push asks for a fresh key per object; fetch asks
 * for the key an existing object names. KMS will be a second implementation.
 */
export interface KeyProvider {
  /** Short description for logs (never key material). */
  readonly description: string;
  newObjectKey(): Promise<ObjectKey>;
  objectKeyFor(descriptor: KeyDescriptor, context: { file: string }): Promise<Buffer>;
}
