import { describe, expect, it } from 'vitest';
import { CorruptObjectError, LocalIoError, StoreUnavailableError } from '../../src/errors.js';
import { partProcesses } from '../../src/restore/part-processes.js';
import type { PartJob } from '../../src/restore/write.js';

/** A stand-in for `walship restore-part`: a Node script that reads the job from stdin and answers as told. */
function child(script: string) {
  return partProcesses({ command: [process.execPath, '-e', `let j='';process.stdin.on('data',(c)=>j+=c).on('end',()=>{const job=JSON.parse(j);${script}})`], slots: 1 });
}

const job: PartJob = {
  backup: { id: '20261202T000000Z', parts: [] } as unknown as PartJob['backup'],
  part: 3,
  dataDir: '/nonexistent',
  tablespaceDirs: [['16400', '/ts']],
  plaintextRequired: true,
};

describe('restore parts written in processes of their own', () => {
  it('hands the whole job over and adds up the bytes the process reports', async () => {
    const w = child(
      `if(job.part!==3||job.tablespaceDirs[0][1]!=='/ts'||job.plaintextRequired!==true)process.exit(9);console.log(JSON.stringify({bytes:5}));console.log('not json');console.log(JSON.stringify({bytes:7}));console.log(JSON.stringify({ok:true}));`,
    );
    let bytes = 0;
    await w.write(job, (n) => (bytes += n));
    expect(bytes).toBe(12);
    await w.close();
  });

  it("brings back the child's error as its class: a damaged part stays a CorruptObjectError naming the part", async () => {
    const w = child(`console.log(JSON.stringify({error:{code:'OBJECT_CORRUPT',message:'part 3 of backup X is damaged: BLAKE3 mismatch',hint:'restore another backup'}}));process.exit(1);`);
    const err = await w.write(job).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect(err).toMatchObject({ message: 'part 3 of backup X is damaged: BLAKE3 mismatch', hint: 'restore another backup' });
    const outage = await child(`console.log(JSON.stringify({error:{code:'STORE_UNAVAILABLE',message:'S3 down'}}));process.exit(1);`)
      .write(job)
      .catch((e: unknown) => e);
    expect(outage).toBeInstanceOf(StoreUnavailableError);
  });

  it('a process that ends without saying ok fails the part, even with exit 0', async () => {
    const crashed = await child(`process.exit(3);`).write(job).catch((e: unknown) => e);
    expect(crashed).toBeInstanceOf(LocalIoError);
    expect((crashed as Error).message).toMatch(/part 3 .* exited with code 3 without reporting/);
    const silent = await child(`console.log(JSON.stringify({bytes:1}));`).write(job).catch((e: unknown) => e);
    expect(silent).toBeInstanceOf(LocalIoError);
  });

  it('close() stops a part still being written, and takes no more', async () => {
    const w = child(`setTimeout(()=>console.log(JSON.stringify({ok:true})),600000);`);
    const pending = w.write(job).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await w.close();
    const err = await pending;
    expect(err).toBeInstanceOf(LocalIoError);
    expect((err as Error).message).toMatch(/killed \(SIGKILL\)/);
    await expect(w.write(job)).rejects.toThrow(/stopping/);
  });
});
