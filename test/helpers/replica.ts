import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** A line of a replica's JSON log. */
export type ReplicaLine = Record<string, unknown>;

export interface ReplicaAnswer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  /** Milliseconds from sending to the whole answer. */
  ms: number;
}

/** A gateway process started as `npm start` starts it (src/main.ts, TENANTGATE_* env), on a port of its own. */
export interface Replica {
  name: string;
  origin: string;
  child: ChildProcess;
  /** Every log line so far (stdout and stderr, each in its own order). */
  readonly lines: ReplicaLine[];
  /** Its request log lines from index `from` of `lines` on. */
  requests(from?: number): ReplicaLine[];
  gql(key: string | null, query: string, variables?: Record<string, unknown>, options?: { address?: string; timeoutMs?: number }): Promise<ReplicaAnswer>;
  get(pathname: string, timeoutMs?: number): Promise<ReplicaAnswer>;
  /** SIGTERM (drains, flushes last-used times, closes the store) and wait for the exit code. */
  stop(): Promise<number | null>;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('TENANTGATE_')) delete env[name];
  return env;
}

/** Starts `node --import tsx src/main.ts` with `env` (port 0: it picks one) and waits for its listening line. */
export async function startReplica(name: string, env: Record<string, string>, readyTimeoutMs = 60_000): Promise<Replica> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tenantgate-replica-${name}-`));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...cleanEnv(), TENANTGATE_DATA_DIR: dir, TENANTGATE_HOST: '127.0.0.1', TENANTGATE_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: ReplicaLine[] = [];
  let listening: (origin: string) => void = () => {};
  const ready = new Promise<string>((resolve) => (listening = resolve));
  const read = (stream: NodeJS.ReadableStream) => {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      rest += chunk.toString();
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        const text = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        let line: ReplicaLine;
        try {
          line = JSON.parse(text) as ReplicaLine;
        } catch {
          line = { msg: 'text', text };
        }
        lines.push(line);
        if (line.msg === 'tenantgate listening' && typeof line.url === 'string') listening(new URL(line.url).origin);
      }
    });
  };
  read(child.stdout!);
  read(child.stderr!);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), readyTimeoutMs);
  const origin = await Promise.race([
    ready,
    exited.then((code) => {
      throw new Error(`replica ${name} exited with ${code} before listening: ${JSON.stringify(lines.slice(-5))}`);
    }),
  ]);
  clearTimeout(timer);
  const agent = new http.Agent({ keepAlive: true });

  const send = (method: string, pathname: string, headers: Record<string, string>, body: string | undefined, address: string, timeoutMs: number) =>
    new Promise<ReplicaAnswer>((resolve, reject) => {
      const started = performance.now();
      const req = http.request(`${origin}${pathname}`, { method, headers, agent, localAddress: address, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, ms: performance.now() - started });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${pathname} on ${name}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });

  return {
    name,
    origin,
    child,
    lines,
    requests: (from = 0) => lines.slice(from).filter((l) => l.msg === 'request'),
    gql: (key, query, variables, options = {}) =>
      send(
        'POST',
        '/graphql',
        { 'content-type': 'application/json', ...(key === null ? {} : { authorization: `Bearer ${key}` }) },
        JSON.stringify({ query, variables }),
        options.address ?? '127.0.0.1',
        options.timeoutMs ?? 15_000,
      ),
    get: (pathname, timeoutMs = 15_000) => send('GET', pathname, {}, undefined, '127.0.0.1', timeoutMs),
    async stop() {
      agent.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(kill);
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** p50 and max of some figures, rounded to 0.1. */
export function summary(values: readonly number[]): { n: number; p50: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (v: number) => Math.round(v * 10) / 10;
  return { n: sorted.length, p50: round(sorted[Math.floor((sorted.length - 1) / 2)] ?? NaN), max: round(sorted.at(-1) ?? NaN) };
}
