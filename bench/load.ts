import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

export interface LoadRequest {
  headers: Record<string, string>;
  body: string;
}

export interface LoadOptions {
  connections: number;
  warmupSeconds: number;
  durationSeconds: number;
}

export interface LoadResult {
  /** 2xx responses whose body held no GraphQL `errors`, per second of the measured run. */
  rps: number;
  ok: number;
  /** Latency in milliseconds of those responses, at hrtime precision. */
  p50: number;
  p99: number;
  max: number;
  /** Non-2xx responses, GraphQL errors in a 2xx body, socket errors and timeouts. */
  failures: number;
  seconds: number;
  /** Server CPU time (all its threads) per response, in µs: steadier than req/s on a busy machine. */
  cpuMicrosPerRequest: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] ?? Number.NaN;
}

/**
 * One autocannon run. The request list is built once and each connection cycles through it from
 * its own starting point, so rotating keys costs the load generator nothing per request. autocannon's own histogram rounds
 * latencies to whole milliseconds; these percentiles come from its per-response hrtime instead.
 */
/** Responses by HTTP status, and 2xx answers whose body held GraphQL `errors`, counted per response. */
interface Tally {
  byStatus: Map<number, number>;
  erroredOk: number;
}

function run(
  url: string,
  requests: LoadRequest[],
  connections: number,
  /** Seconds to run, or `{ amount }`: stop after that many requests. */
  length: number | { amount: number },
  record: boolean,
  tally?: Tally,
): Promise<Omit<LoadResult, 'cpuMicrosPerRequest'> & { socketErrors: number }> {
  return new Promise((resolve, reject) => {
    let latencies = new Float64Array(1 << 16);
    let n = 0;
    const list = requests.map((r) => ({
      method: 'POST' as const,
      headers: { 'content-type': 'application/json', ...r.headers },
      body: r.body,
    }));
    // autocannon starts every connection at the first request: 50 connections would then ask for
    // the same key (and org) at the same moment and reach only the first few hundred of the list
    // in a run. Each connection starts at its own place instead, evenly spread over the list.
    const stride = Math.max(1, Math.floor(list.length / connections));
    let clients = 0;
    const instance = autocannon(
      {
        url,
        connections,
        ...(typeof length === 'number' ? { duration: length } : { amount: length.amount }),
        timeout: 10,
        requests: list,
        // The iterator's position is internal to autocannon (pinned at 9.0.0): setRequests with a
        // rotated copy would build every request again, per connection, inside the timed run.
        setupClient: (client: autocannon.Client) => {
          const iterator = (client as unknown as { requestIterator: { requests: unknown[]; currentRequestIndex: number; currentRequest: unknown } })
            .requestIterator;
          const offset = ((clients++ % connections) * stride) % iterator.requests.length;
          iterator.currentRequestIndex = offset;
          iterator.currentRequest = iterator.requests[offset];
          if (tally) {
            // 'response' (with the status) comes just before that response's 'mismatch', on the same client.
            let last = 0;
            client.on('response', (statusCode: number) => {
              last = statusCode;
              tally.byStatus.set(statusCode, (tally.byStatus.get(statusCode) ?? 0) + 1);
            });
            // autocannon's types omit the client's 'mismatch' event (a body verifyBody refused).
            (client as unknown as NodeJS.EventEmitter).on('mismatch', () => {
              if (last >= 200 && last < 300) tally.erroredOk++;
            });
          }
        },
        // A GraphQL error still answers 200: count it as a failure, not as throughput.
        verifyBody: (body: string) => !body.includes('"errors"'),
      } as autocannon.Options,
      (error, result) => {
        if (error) return reject(error);
        const sorted = latencies.subarray(0, n).sort();
        const failures = result.non2xx + result.errors + result.timeouts + result.mismatches;
        const ok = result['2xx'] - result.mismatches;
        resolve({
          rps: ok / result.duration,
          ok,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          max: sorted[sorted.length - 1] ?? Number.NaN,
          failures,
          seconds: result.duration,
          socketErrors: result.errors + result.timeouts,
        });
      },
    );
    if (record) {
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        if (statusCode < 200 || statusCode >= 300) return;
        if (n === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[n++] = responseTime;
      });
    }
  });
}

/**
 * An unrecorded warm-up (one pass over the request list, then `warmupSeconds` more: JIT, caches,
 * connections), then the measured run. `serverCpu`
 * reads the server's CPU time in µs; it is called just before and just after the measured run.
 */
export async function drive(
  url: string,
  requests: LoadRequest[],
  options: LoadOptions,
  serverCpu: () => Promise<number>,
): Promise<LoadResult> {
  if (options.warmupSeconds > 0) {
    // First one pass over the whole list, so that every key (and, in the gateway, every cached
    // answer) has been seen once before the measured run, whatever the server's speed.
    await run(url, requests, options.connections, { amount: Math.max(requests.length, options.connections) }, false);
    await run(url, requests, options.connections, options.warmupSeconds, false);
  }
  const cpuBefore = await serverCpu();
  const { socketErrors: _, ...result } = await run(url, requests, options.connections, options.durationSeconds, true);
  const cpu = (await serverCpu()) - cpuBefore;
  return { ...result, cpuMicrosPerRequest: cpu / Math.max(1, result.ok + result.failures) };
}

/** One group of connections of a shared run (bench/noisy.ts: the flooding org and the polling one). */
export interface Lane {
  requests: LoadRequest[];
  /** What the warm-up sends instead of `requests` (the flood: other variables, so no answer it kept can serve the measured run). */
  warmupRequests?: LoadRequest[];
  connections: number;
  /** A status that is expected and counted apart, not as a failure (the flood's 429). */
  refusedStatus?: number;
  /**
   * Drive this lane from a child process of its own (bench/lane-worker.ts): a lane receiving
   * large answers keeps the load generator's event loop busy, which would otherwise show as
   * latency in every other lane of this process.
   */
  ownProcess?: boolean;
}

export interface LaneResult extends Omit<LoadResult, 'cpuMicrosPerRequest'> {
  /** Responses with `refusedStatus`. */
  refused: number;
  /** Every response, refused ones included. */
  responses: number;
  byStatus: Record<string, number>;
  /** CPU time of the process that drove the lane over the run, µs (its load generator's work). */
  driverCpuMicros: number;
}

/**
 * One run of a lane in this process. Its failures are every response other than HTTP 200 without
 * GraphQL `errors` (its `refusedStatus` apart), socket errors and timeouts.
 */
export async function runLane(url: string, lane: Lane, seconds: number, record: boolean): Promise<LaneResult> {
  const tally: Tally = { byStatus: new Map(), erroredOk: 0 };
  const cpuBefore = process.cpuUsage();
  const { socketErrors, ...result } = await run(url, record ? lane.requests : (lane.warmupRequests ?? lane.requests), lane.connections, seconds, record, tally);
  const cpu = process.cpuUsage(cpuBefore);
  let responses = 0;
  let refused = 0;
  let otherStatus = 0;
  for (const [status, count] of tally.byStatus) {
    responses += count;
    if (status === lane.refusedStatus) refused += count;
    else if (status !== 200) otherStatus += count;
  }
  // run() counted every 2xx as good unless its body held errors; here only 200 is.
  const ok = (tally.byStatus.get(200) ?? 0) - tally.erroredOk;
  return {
    ...result,
    ok,
    rps: ok / result.seconds,
    failures: otherStatus + tally.erroredOk + socketErrors,
    refused,
    responses,
    byStatus: Object.fromEntries([...tally.byStatus].map(([status, count]) => [String(status), count])),
    driverCpuMicros: cpu.user + cpu.system,
  };
}

/** A lane driven by bench/lane-worker.ts in a child process: one run per call, on request. */
async function laneProcess(url: string, lane: Lane): Promise<{ run(seconds: number, record: boolean): Promise<LaneResult>; stop(): void }> {
  // Forked with this process's Node flags (tsx's loader among them), so the worker runs as TypeScript too.
  const child = fork(fileURLToPath(new URL('./lane-worker.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`lane worker exited with ${code} before it was ready`)));
  });
  return {
    run: (seconds, record) =>
      new Promise<LaneResult>((resolve, reject) => {
        child.once('message', (message: LaneWorkerReply) => {
          if (message.type === 'done') resolve(message.result);
          else reject(new Error(message.type === 'error' ? message.error : 'lane worker answered out of turn'));
        });
        child.send({ type: 'run', url, lane, seconds, record } satisfies LaneWorkerCommand);
      }),
    stop: () => void child.kill(),
  };
}

export type LaneWorkerCommand = { type: 'run'; url: string; lane: Lane; seconds: number; record: boolean };
export type LaneWorkerReply = { type: 'ready' } | { type: 'done'; result: LaneResult } | { type: 'error'; error: string };

/**
 * Several lanes at once against one server, each its own autocannon instance (their own
 * histograms and status counts; a lane with `ownProcess` in a child process): a warm-up of
 * `warmupSeconds` with every lane running, then `durationSeconds` measured, every lane started
 * together. Also returns the server's CPU µs per response over the measured run.
 */
export async function driveLanes(
  url: string,
  lanes: Lane[],
  options: Pick<LoadOptions, 'warmupSeconds' | 'durationSeconds'>,
  serverCpu: () => Promise<number>,
): Promise<{ lanes: LaneResult[]; cpuMicrosPerRequest: number }> {
  const workers = await Promise.all(lanes.map((lane) => (lane.ownProcess ? laneProcess(url, lane) : undefined)));
  try {
    const runAll = (seconds: number, record: boolean) =>
      Promise.all(lanes.map((lane, i) => workers[i]?.run(seconds, record) ?? runLane(url, lane, seconds, record)));
    if (options.warmupSeconds > 0) await runAll(options.warmupSeconds, false);
    const cpuBefore = await serverCpu();
    const out = await runAll(options.durationSeconds, true);
    const cpu = (await serverCpu()) - cpuBefore;
    return { lanes: out, cpuMicrosPerRequest: cpu / Math.max(1, out.reduce((n, lane) => n + lane.responses, 0)) };
  } finally {
    for (const worker of workers) worker?.stop();
  }
}
