import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Start-up: the time from spawning the gateway as `npm start` runs it (node with the start
 * script's flags on the file it names, the bundle dist/tenantgate.mjs) to its first `GET /ready`
 * answering 200, on the seeded store. The prestart check (bin/build-if-stale.js) runs once before,
 * untimed, so the bundle is the current src/. Budget: 1 s. Each start is a new process on the same
 * file; the median of `rounds` is reported, with the fastest and slowest beside it, and the CPU
 * time the process had used by then (from /proc; on a machine shared with other work it moves less
 * than the wall time).
 */

export interface ReadyResult {
  rounds: number;
  /** What was started: the start script's file. */
  entry: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** CPU time (user + system) of the median start, where /proc has it. */
  cpuMs: number | undefined;
  loadAverage: number;
}

/** utime + stime of a process, in ms (Linux; clock ticks are 100 Hz there). */
function cpuMsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** The file the `start` script runs (its last word), relative to the package root. */
export function startEntry(root: string): string {
  const start = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const entry = start.trim().split(/\s+/).at(-1);
  if (!entry || entry.startsWith('-')) throw new Error(`cannot tell which file the start script runs: ${start}`);
  return entry;
}

const POLL_MS = 2;
const GIVE_UP_MS = 30_000;

/** A port that was free a moment ago: main.js must be told one, as it logs its URL only at info. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function startOnce(root: string, entry: string, nodeFlags: string[], env: Record<string, string>): Promise<{ ms: number; cpuMs: number | undefined }> {
  const port = await freePort();
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTGATE_')));
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeFlags, path.join(root, entry)], {
    cwd: root,
    env: { ...inherited, NODE_ENV: 'production', ...env, TENANTGATE_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  try {
    for (;;) {
      if (exitCode !== undefined) throw new Error(`the gateway exited with ${exitCode} before /ready answered 200`);
      if (performance.now() - started > GIVE_UP_MS) throw new Error(`/ready did not answer 200 within ${GIVE_UP_MS} ms`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/ready`);
        await res.arrayBuffer();
        if (res.status === 200) return { ms: performance.now() - started, cpuMs: cpuMsOf(child.pid) };
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    if (exitCode === undefined) child.kill('SIGTERM');
    await exited;
  }
}

export async function measureReady(
  root: string,
  nodeFlags: string[],
  env: Record<string, string>,
  log: (line: string) => void,
  rounds = 5,
): Promise<ReadyResult> {
  const entry = startEntry(root);
  execFileSync(process.execPath, [path.join(root, 'bin', 'build-if-stale.js')], { cwd: root, stdio: 'inherit' });
  const loadAverage = os.loadavg()[0] ?? 0;
  const starts: Array<{ ms: number; cpuMs: number | undefined }> = [];
  for (let i = 0; i < rounds; i++) starts.push(await startOnce(root, entry, nodeFlags, env));
  const sorted = [...starts].sort((a, b) => a.ms - b.ms);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const result: ReadyResult = {
    rounds,
    entry,
    medianMs: median.ms,
    minMs: sorted[0]!.ms,
    maxMs: sorted[sorted.length - 1]!.ms,
    cpuMs: median.cpuMs,
    loadAverage,
  };
  log(
    `start-up: /ready 200 after ${result.medianMs.toFixed(0)} ms (median of ${rounds} starts; ${result.minMs.toFixed(0)}-${result.maxMs.toFixed(0)} ms; ` +
      `${result.cpuMs ?? '?'} ms CPU; load average ${loadAverage.toFixed(2)}), node ${nodeFlags.join(' ')} ${entry}`,
  );
  return result;
}

export function formatReady(result: ReadyResult, store: string): string {
  return [
    '',
    '',
    '## Start-up',
    '',
    `Spawn of \`node <start flags> ${result.entry}\` (as \`npm start\` runs it; its prestart check ran once before, untimed) to the first`,
    `\`GET /ready\` 200, on ${store}: median of ${result.rounds} starts (load average ${result.loadAverage.toFixed(2)} before them).`,
    'Budget: 1000 ms. CPU is what the median start had used by then.',
    '',
    '| median | fastest | slowest | CPU | budget |',
    '|---:|---:|---:|---:|---|',
    `| ${result.medianMs.toFixed(0)} ms | ${result.minMs.toFixed(0)} ms | ${result.maxMs.toFixed(0)} ms | ${result.cpuMs === undefined ? 'n/a' : `${result.cpuMs} ms`} | ${result.medianMs <= 1000 ? 'met' : '**missed**'} |`,
    '',
  ].join('\n');
}
