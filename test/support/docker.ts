/**
 * Is a container engine usable? Tests that need one use
 * `it.skipIf(!(await dockerAvailable()))` (or describe.runIf) instead of failing
 * on machines without Docker/Podman.
 */

let cached: Promise<boolean> | undefined;

/**
 * Resolves true if testcontainers finds a working container runtime, false
 * otherwise. Never rejects. testcontainers is imported lazily so that merely
 * importing this module costs nothing, and an import failure also yields
 * false. The answer is cached per process (the probe is not free with an
 * engine present).
 */
export function dockerAvailable(timeoutMs = 15_000): Promise<boolean> {
  cached ??= probe(timeoutMs);
  return cached;
}

async function probe(timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('container runtime probe timed out')), timeoutMs);
      // Do not keep the test process alive just for this timer.
      timer.unref();
    });
    await Promise.race([getContainerRuntimeClient(), timeout]);
    return true;
  } catch {
    // No socket, no permissions, or a hung engine: all mean "no Docker".
    return false;
  } finally {
    if (timer) clearTimeout(timer);
  }
}
