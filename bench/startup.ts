import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

/**
 * Start-up: the time from spawning the gateway as `npm start` runs it (node with the start
 * script's flags on dist/src/main.js, no prestart build) to its first `GET /ready` answering 200,
 * on the seeded store. Budget: 1 s. Each start is a new process on the same file; the median of
 * `rounds` is reported, with the fastest and slowest beside it.
 */

export interface ReadyResult {
  rounds: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
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

async function startOnce(root: string, nodeFlags: string[], env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTGATE_')));
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeFlags, path.join(root, 'dist', 'src', 'main.js')], {
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
        if (res.status === 200) return performance.now() - started;
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
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) times.push(await startOnce(root, nodeFlags, env));
  const sorted = [...times].sort((a, b) => a - b);
  const result: ReadyResult = {
    rounds,
    medianMs: sorted[Math.floor(sorted.length / 2)]!,
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
  };
  log(
    `start-up: /ready 200 after ${result.medianMs.toFixed(0)} ms (median of ${rounds} starts; ${result.minMs.toFixed(0)}-${result.maxMs.toFixed(0)} ms), ` +
      `node ${nodeFlags.join(' ')} dist/src/main.js`,
  );
  return result;
}

export function formatReady(result: ReadyResult, store: string): string {
  return [
    '',
    '## Start-up',
    '',
    `Spawn of \`node <start flags> dist/src/main.js\` (as \`npm start\` runs it, without its prestart check) to the first`,
    `\`GET /ready\` 200, on ${store}: median of ${result.rounds} starts. Budget: 1000 ms.`,
    '',
    '| median | fastest | slowest |',
    '|---:|---:|---:|',
    `| ${result.medianMs.toFixed(0)} ms | ${result.minMs.toFixed(0)} ms | ${result.maxMs.toFixed(0)} ms |`,
    '',
  ].join('\n');
}
