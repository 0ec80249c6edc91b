// (b) One push call as PostgreSQL makes it, for one fresh segment, in three
// set-ups measured in the same rounds (the order rotates every round):
//   warm:    the agent already runs and is idle; the segment's .ready file
//            is created and `walship push` is started at the same moment;
//   cold:    no agent runs; the call starts it (and waits for its answer);
//   inproc:  WALSHIP_AGENT off: today's push, Node in the call, with
//            nothing to look ahead at.
// Each set-up has its own data directory and store. Timed from spawn to
// exit of `sh -c '<archive_command> pg_wal/<segment>'`, as PostgreSQL's
// system() sees it; the first round is a warm-up and is not counted.
import { closeSync, openSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { agentIdle, agentPaths, agentPid, agentRunning, countFallbacks, standInPostmaster, stopAgent } from './agent.mjs';
import { addSegment, prepareTool, skeletonDataDir } from './archive.mjs';
import { chownPg, run } from './proc.mjs';

/** Epoch ms of the agent's last start-up line and of its "archived <seg>" line, from its JSON log. */
function agentLogTimes(log, seg) {
  const out = {};
  let text = '';
  try {
    text = readFileSync(log, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const r = JSON.parse(line);
      if (typeof r.msg !== 'string') continue;
      if (r.msg.startsWith('agent started')) out.started = Date.parse(r.time);
      if (r.file === seg && r.msg === `archived ${seg}`) out.archived = Date.parse(r.time);
    } catch {
      /* a line being written */
    }
  }
  return out;
}

export const MODES = ['warm', 'cold', 'inproc'];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function pushLatencyRun(ctx, runs) {
  const setups = {};
  for (const mode of MODES) {
    const dir = join(ctx.work, `b-${mode}`);
    const data = join(dir, 'data');
    skeletonDataDir(ctx.corpus, data);
    const spec = { tool: 'walship', encrypt: true, lookAhead: true, agent: mode !== 'inproc' };
    const tool = await prepareTool(ctx, spec, dir, data);
    chownPg(dir);
    setups[mode] = {
      mode,
      dir,
      data,
      tool,
      group: ctx.acct.group(`b-${mode}`),
      postmaster: spec.agent ? standInPostmaster(data) : undefined,
      samples: [],
      startMs: [],
      archivedMs: [],
    };
  }
  const segs = ctx.corpus.segments;
  const pick = Array.from({ length: runs + 1 }, (_, i) => segs[Math.floor(((i + 0.5) * segs.length) / (runs + 1))]);
  const paths = (s) => agentPaths(s.tool.spool);
  let warmPid;
  let warmRestarts = 0;
  const ratios = [];

  const call = async (s, seg) => {
    const at = Date.now();
    addSegment(ctx.corpus, s.data, seg);
    const out = openSync(join(s.dir, 'calls.log'), 'a');
    const shell = s.group.wrap(`${s.tool.command.join(' ')} pg_wal/${seg}`);
    const r = await run('/bin/sh', ['-c', shell], { cwd: s.data, env: s.tool.env, pg: true, stdio: ['ignore', out, out], timeoutMs: 120_000 }).finally(() => closeSync(out));
    if (r.code !== 0) throw new Error(`${s.mode} push of ${seg} failed (exit ${r.code}); see ${join(s.dir, 'calls.log')}`);
    const status = join(s.data, 'pg_wal', 'archive_status', seg);
    renameSync(`${status}.ready`, `${status}.done`);
    if (s.mode !== 'inproc') {
      // Where the time went, from the agent's log (ms since the .ready file
      // was created): its start-up (cold only) and its "archived" line.
      const t = agentLogTimes(paths(s).log, seg);
      if (t.started !== undefined && t.started >= at) s.startMs.push(t.started - at);
      if (t.archived !== undefined) s.archivedMs.push(t.archived - at);
    }
    return r.ms;
  };

  try {
    for (const [i, seg] of pick.entries()) {
      const order = MODES.map((_, k) => MODES[(k + i) % MODES.length]);
      const round = {};
      for (const mode of order) {
        const s = setups[mode];
        if (mode === 'warm' && i > 0) {
          // Running and idle-waiting before the clock starts.
          if (!agentRunning(paths(s))) throw new Error(`the warm agent is gone before round ${i} (see ${paths(s).log})`);
          await agentIdle(paths(s));
          const pid = agentPid(paths(s));
          if (pid !== warmPid) warmRestarts++;
          warmPid = pid;
        }
        if (mode === 'cold' && agentRunning(paths(s))) await stopAgent(paths(s));
        const ms = await call(s, seg);
        if (i > 0) {
          s.samples.push(ms);
          round[mode] = ms;
        } else {
          s.startMs.length = 0;
          s.archivedMs.length = 0;
        }
        if (mode === 'warm' && i === 0) {
          await agentIdle(paths(s));
          warmPid = agentPid(paths(s));
        }
      }
      if (i > 0) ratios.push(round.cold / round.inproc);
    }
  } finally {
    for (const s of Object.values(setups)) s.postmaster?.stop();
  }
  const out = { id: 'push-latency', runs: runs, warmRestarts, coldOverInproc: ratios, medianColdOverInproc: median(ratios), modes: {} };
  for (const s of Object.values(setups)) {
    const leftovers = await s.group.settle(10_000);
    out.modes[s.mode] = {
      medianMs: median(s.samples),
      minMs: Math.min(...s.samples),
      maxMs: Math.max(...s.samples),
      samples: s.samples,
      agentStartMedianMs: median(s.startMs),
      agentArchivedMedianMs: median(s.archivedMs),
      leftovers,
      fallbacks: s.mode === 'inproc' ? undefined : countFallbacks(join(s.dir, 'calls.log')),
    };
  }
  return out;
}
