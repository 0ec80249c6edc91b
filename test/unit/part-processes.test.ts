import { describe, expect, it } from 'vitest';
import { reportError } from '../../src/child/index.js';
import { CorruptObjectError, errorFromReport, LocalIoError, StoreUnavailableError } from '../../src/errors.js';
import { partKey } from '../../src/backup/layout.js';
import { partUploaders } from '../../src/backup/part-processes.js';
import type { PartUpload } from '../../src/backup/take.js';
import { partProcesses } from '../../src/restore/part-processes.js';
import type { PartJob } from '../../src/restore/write.js';

/** A child script that runs `script` with `job` parsed from the first stdin line (the parent keeps stdin open). */
function firstLine(script: string): string {
  return `let j='';process.stdin.on('data',(c)=>{j+=c;if(!j.includes('\\n'))return;process.stdin.pause();const job=JSON.parse(j.slice(0,j.indexOf('\\n')));${script};process.stdin.destroy();})`;
}

/** A stand-in for `walship restore-part`: a Node script that reads the job from stdin and answers as told. */
function child(script: string) {
  return partProcesses({ command: [process.execPath, '-e', firstLine(script)], slots: 1 });
}

const job: PartJob = {
  backup: { id: '20261202T000000Z', parts: [] } as unknown as PartJob['backup'],
  part: 3,
  dataDir: '/nonexistent',
  tablespaceDirs: [['16400', '/ts']],
  plaintextRequired: true,
};

describe('backup and restore parts done in processes of their own', () => {
  it("a backup part's result (the part and its manifest files) comes back whole", async () => {
    const up = partUploaders({
      command: [
        process.execPath,
        '-e',
        firstLine(
          `console.log(JSON.stringify({bytes:job.entries[0].size}));console.log(JSON.stringify({ok:true,result:{part:{n:job.n,key:${JSON.stringify(partKey('B', 4))},rawSize:1,storedSize:2,blake3:'b',files:1},files:[{path:job.entries[0].path,size:3,mtime:1,algorithm:'CRC32C',checksum:'8a744722'}]}}))`,
        ),
      ],
      slots: 1,
    });
    const job: PartUpload = { backupId: 'B', n: 4, entries: [{ path: 'PG_VERSION', abs: '/x/PG_VERSION', type: 'file', mode: 0o600, size: 3, mtime: 1 }], systemIdentifier: '1', compression: 'lz4', encrypted: true, createdBy: 't' };
    let bytes = 0;
    const r = await up.run(job, (n) => (bytes += n));
    expect(bytes).toBe(3);
    expect(r.part).toMatchObject({ n: 4, rawSize: 1 });
    expect(r.files).toEqual([{ path: 'PG_VERSION', size: 3, mtime: 1, algorithm: 'CRC32C', checksum: '8a744722' }]);
    // A process that reports another part's key than it was asked for is not believed.
    await expect(up.run({ ...job, n: 5 })).rejects.toThrow(/part 5 of backup B: its process reported part 5 \(.*part-000004/);
    await up.close();
  });

  it('hands the whole job over and adds up the bytes the process reports', async () => {
    const w = child(
      `if(job.part!==3||job.tablespaceDirs[0][1]!=='/ts'||job.plaintextRequired!==true)process.exit(9);console.log(JSON.stringify({bytes:5}));console.log('not json');console.log(JSON.stringify({bytes:7}));console.log(JSON.stringify({ok:true}));`,
    );
    let bytes = 0;
    await w.run(job, (n) => (bytes += n));
    expect(bytes).toBe(12);
    await w.close();
  });

  it("brings back the child's error as its class: a damaged part stays a CorruptObjectError naming the part", async () => {
    const w = child(
      `console.log(JSON.stringify({error:{code:'OBJECT_CORRUPT',message:'part 3 of backup X is damaged: BLAKE3 mismatch',hint:'restore another backup',key:'backups/X/part-000003'}}));process.exit(1);`,
    );
    const err = await w.run(job).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    // The store key comes back too: the log line of the failure names the object.
    expect(err).toMatchObject({ message: 'part 3 of backup X is damaged: BLAKE3 mismatch', hint: 'restore another backup', key: 'backups/X/part-000003' });
    const outage = await child(`console.log(JSON.stringify({error:{code:'STORE_UNAVAILABLE',message:'S3 down'}}));process.exit(1);`)
      .run(job)
      .catch((e: unknown) => e);
    expect(outage).toBeInstanceOf(StoreUnavailableError);
  });

  it("the child's report of an error carries its class, hint, file and store key, and the parent revives all of them", () => {
    const thrown = new CorruptObjectError('part 3 of backup X is damaged', { key: 'backups/X/part-000003', file: 'base/5/16396', hint: 'restore another backup' });
    const line = JSON.parse(JSON.stringify({ error: reportError(thrown) })) as { error: Parameters<typeof errorFromReport>[0] };
    const revived = errorFromReport(line.error);
    expect(revived).toBeInstanceOf(CorruptObjectError);
    expect(revived).toMatchObject({ message: thrown.message, key: thrown.key, file: thrown.file, hint: thrown.hint });
    // Not a walship error: INTERNAL, without fields it does not have.
    expect(reportError(new Error('boom'))).toEqual({ code: 'INTERNAL', message: 'boom' });
  });

  it('a process that ends without saying ok fails the part, even with exit 0', async () => {
    const crashed = await child(`process.exit(3);`).run(job).catch((e: unknown) => e);
    expect(crashed).toBeInstanceOf(LocalIoError);
    expect((crashed as Error).message).toMatch(/part 3 .* exited with code 3 without reporting/);
    const silent = await child(`console.log(JSON.stringify({bytes:1}));`).run(job).catch((e: unknown) => e);
    expect(silent).toBeInstanceOf(LocalIoError);
  });

  it('close() stops a part still being written, and takes no more', async () => {
    const w = child(`setTimeout(()=>console.log(JSON.stringify({ok:true})),600000);`);
    const pending = w.run(job).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await w.close();
    const err = await pending;
    expect(err).toBeInstanceOf(LocalIoError);
    expect((err as Error).message).toMatch(/killed \(SIGKILL\)/);
    await expect(w.run(job)).rejects.toThrow(/stopping/);
  });
});
