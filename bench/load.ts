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
function run(
  url: string,
  requests: LoadRequest[],
  connections: number,
  /** Seconds to run, or `{ amount }`: stop after that many requests. */
  length: number | { amount: number },
  record: boolean,
): Promise<Omit<LoadResult, 'cpuMicrosPerRequest'>> {
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
  const result = await run(url, requests, options.connections, options.durationSeconds, true);
  const cpu = (await serverCpu()) - cpuBefore;
  return { ...result, cpuMicrosPerRequest: cpu / Math.max(1, result.ok + result.failures) };
}
