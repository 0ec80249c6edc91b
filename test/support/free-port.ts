import { createServer } from 'node:net';

/**
 * Ask the kernel for an unused TCP port on the loopback interface.
 *
 * We bind to 127.0.0.1:0, read back the port the kernel picked and close the
 * socket again. There is an inherent race (another process may grab the port
 * before our caller binds it), but on a test machine with only loopback
 * networking that is rare; callers that care (PgCluster) retry on
 * "address already in use".
 */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    // Do not let a forgotten socket keep the test process alive.
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        server.close();
        reject(new Error(`freePort: unexpected server address ${String(addr)}`));
        return;
      }
      const { port } = addr;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
