import { LockHolder } from '../../src/spool/lock-holder.js';

/** Takes the lock named by argv[2] with a LockHolder, says so, and waits to be killed (test/unit/lock-holder.test.ts). */
const h = await LockHolder.take(process.argv[2]!);
process.stdout.write(h === 'busy' ? 'busy\n' : 'held\n');
setInterval(() => undefined, 1000);
