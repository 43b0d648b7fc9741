import os from 'node:os';
import { driveLanes, type Lane, type LaneResult, type LoadOptions, type LoadRequest } from './load.ts';
import { MODULES_PER_ORG, type BenchKey } from './seed.ts';

/**
 * The noisy-neighbour row (issue 14 item 5): org A floods the gateway on 45 connections with the
 * costliest reads the operation limits let through, none of them answered by the response cache,
 * while org B polls its dashboard page on 5. Each side is its own autocannon instance in the
 * bench's process, both started together, so each has its own latencies and status counts. It
 * runs twice in the same run: on a gateway at the defaults (per-org admission on) and on one with
 * admission out of the way (TENANTGATE_ORG_MAX_IN_FLIGHT=10000, TENANTGATE_ORG_QUEUE=0), B alone
 * first on each. A's 429 (RATE_LIMITED, limit concurrency) is expected and counted apart; any other
 * answer but 200 without errors, on either side, is a failure.
 */

export const NOISY_A_CONNECTIONS = 45;
export const NOISY_B_CONNECTIONS = 5;
/** The flood's requests, each with its own variables: far more than A's share of the cache holds. */
const FLOOD_REQUESTS_PER_CONNECTION = 20;
export const NOISY_A_ORG = 'org-0000';
export const NOISY_B_ORG = 'org-0001';
/** The "before": admission effectively off (no org waits, none is refused for concurrency). */
export const ADMISSION_OFF = { TENANTGATE_ORG_MAX_IN_FLIGHT: '10000', TENANTGATE_ORG_QUEUE: '0' };

/** B's dashboard: the page the other rows poll (answered by the response cache after its first miss). */
const DASHBOARD = 'query Modules { modules(first: 20) { edges { node { id name version enabled } } totalCount } }';
const NODE = 'id orgId name version description config enabled hasCredential usageCount lastUsedAt installedAt updatedAt health { status message checkedAt }';
const page = (alias: string, first: number) =>
  `${alias}: modules(first: ${first}) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { ${NODE} } } }`;

/** `full` pages of 100 modules with every field, and one more of `extra` (0: none). */
function floodDocument(full: number, extra: number): string {
  const pages = Array.from({ length: full }, (_, i) => page(`p${i}`, 100));
  if (extra > 0) pages.push(page('rest', extra));
  return `query Flood { ${pages.join(' ')} }`;
}

interface ServerLike {
  url: string;
  cpu(): Promise<number>;
  peakRss(): Promise<number>;
  stop(): Promise<void>;
}

export interface NoisyDeps {
  startChild(script: string, env: Record<string, string>, withProfile: boolean): Promise<ServerLike>;
  gatewayEnv: Record<string, string>;
  keys: BenchKey[];
  load: LoadOptions;
  profile: boolean;
  log(line: string): void;
}

export interface NoisyPhase {
  b: LaneResult;
  a?: LaneResult;
  /** The server's CPU per response (both orgs) over the measured run, µs. */
  cpuMicrosPerRequest: number;
  /** The response cache's misses over the measured run (from /metrics; A's answers all execute). */
  cacheMisses: number;
}

export interface NoisyGateway {
  label: string;
  alone: NoisyPhase;
  /** The flood round with the median B p99. */
  flood: NoisyPhase;
  rounds: NoisyPhase[];
  peakRss: number;
}

export interface NoisyResult {
  /** The flood's document: full pages of 100, the extra page's size, bytes, and one answer's bytes. */
  document: { fullPages: number; extraPage: number; bytes: number; answerBytes: number };
  on: NoisyGateway;
  off: NoisyGateway;
  /** Measured seconds per flood round. */
  roundSeconds: number;
}

const gql = (key: string, query: string, variables?: Record<string, unknown>): LoadRequest => ({
  headers: { authorization: `Bearer ${key}` },
  body: JSON.stringify(variables ? { query, variables } : { query }),
});

interface Answer {
  status: number;
  text: string;
  body?: { data?: Record<string, unknown> | null; errors?: Array<{ extensions?: { code?: string; limit?: string } }> };
}

async function send(url: string, request: LoadRequest): Promise<Answer> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...request.headers }, body: request.body });
  const text = await res.text();
  try {
    return { status: res.status, text, body: JSON.parse(text) as Answer['body'] };
  } catch {
    return { status: res.status, text };
  }
}

const passes = (answer: Answer) => answer.status === 200 && answer.body?.errors === undefined && answer.body?.data != null;

/**
 * The costliest flood document within the gateway's limits, found by asking it: the most full
 * pages (modules(first: 100), every field) it answers, then the largest extra page that still
 * fits (TENANTGATE_MAX_COST, within TENANTGATE_MAX_ALIASES). Every step is a real request, so
 * the document the flood sends is one the gateway answered with HTTP 200 and no errors.
 */
async function costliestDocument(url: string, key: string): Promise<{ fullPages: number; extraPage: number; query: string }> {
  const fits = async (full: number, extra: number) => passes(await send(url, gql(key, floodDocument(full, extra), { probe: `${full}/${extra}` })));
  let full = 0;
  for (let n = 15; n >= 1; n--) {
    if (await fits(n, 0)) {
      full = n;
      break;
    }
  }
  if (full === 0) throw new Error('noisy: not even one modules(first: 100) page with every field passes the limits');
  // Largest extra page in [0, 99] that still fits (fitting is monotonic in its size).
  let low = 0;
  let high = 99;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (await fits(full, mid)) low = mid;
    else high = mid - 1;
  }
  return { fullPages: full, extraPage: low, query: floodDocument(full, low) };
}

/**
 * The response cache's misses so far (executed cacheable queries), from the gateway's /metrics.
 * Counted at each request's record stage, so a delta over a run is approximate at its edges.
 */
async function cacheMisses(url: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  return Number(/^tenantgate_response_cache_total\{result="miss"\} (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/** Interleaved flood rounds per gateway (on, off, on, off, ...); each side reports its median round. */
export const NOISY_ROUNDS = 3;

export async function runNoisy(deps: NoisyDeps): Promise<NoisyResult> {
  const { log, load } = deps;
  const keysOf = (orgId: string) => deps.keys.filter((k) => k.orgId === orgId);
  const aKeys = keysOf(NOISY_A_ORG);
  const bKeys = keysOf(NOISY_B_ORG);
  if (aKeys.length === 0 || bKeys.length === 0) throw new Error(`noisy: the main store has no keys for ${NOISY_A_ORG} or ${NOISY_B_ORG}`);
  const poll = bKeys.map((k) => gql(k.secret, DASHBOARD));
  const alonePhase = { warmupSeconds: load.warmupSeconds, durationSeconds: load.durationSeconds };
  // As the scale pair: half the measured time per round, so the rounds together take about as long as two rows.
  const roundPhase = { warmupSeconds: Math.min(load.warmupSeconds, 1), durationSeconds: Math.max(1, Math.round(load.durationSeconds / 2)) };

  const gateways = await Promise.all([
    deps.startChild('gateway.ts', deps.gatewayEnv, deps.profile).then((child) => ({ label: 'admission on (defaults)', child })),
    deps.startChild('gateway.ts', { ...deps.gatewayEnv, ...ADMISSION_OFF }, deps.profile).then((child) => ({ label: 'admission off', child })),
  ]);
  try {
    const found = await costliestDocument(gateways[0]!.child.url, aKeys[0]!.secret);
    log(`noisy: flood document has ${found.fullPages} pages of 100 modules (every field) and one of ${found.extraPage}, ${Buffer.byteLength(found.query)} bytes`);
    // Distinct variables (undeclared, so execution ignores them) on every request: the response
    // cache keys by them, and each list is far longer than the share of the cache one org may hold.
    // Every warm-up and every round gets a list of its own, so no kept answer can serve it.
    let nonce = 0;
    const floodList = () =>
      Array.from({ length: NOISY_A_CONNECTIONS * FLOOD_REQUESTS_PER_CONNECTION }, (_, i) => gql(aKeys[i % aKeys.length]!.secret, found.query, { nonce: nonce++ }));
    const document: NoisyResult['document'] = { fullPages: found.fullPages, extraPage: found.extraPage, bytes: Buffer.byteLength(found.query), answerBytes: 0 };

    for (const { label, child } of gateways) {
      // Before the load: B's polls and A's requests answer 200 with the expected data, on both gateways.
      for (const request of poll) {
        const answer = await send(child.url, request);
        const modules = answer.body?.data?.modules as { edges?: unknown[]; totalCount?: number } | undefined;
        if (!passes(answer) || modules?.edges?.length !== 20 || modules.totalCount !== MODULES_PER_ORG) {
          throw new Error(`noisy (${label}): B's poll answered HTTP ${answer.status}: ${answer.text.slice(0, 300)}`);
        }
      }
      for (const request of floodList().slice(0, 4)) {
        const answer = await send(child.url, request);
        const pages = Object.values(answer.body?.data ?? {}) as Array<{ edges?: unknown[] } | null>;
        if (!passes(answer) || pages.length !== found.fullPages + (found.extraPage > 0 ? 1 : 0) || pages.some((p) => !p?.edges?.length)) {
          throw new Error(`noisy (${label}): A's flood request answered HTTP ${answer.status}: ${answer.text.slice(0, 300)}`);
        }
        document.answerBytes = Buffer.byteLength(answer.text);
      }
    }

    const phase = async (label: string, child: ServerLike, name: string, lanes: Lane[], options: typeof alonePhase): Promise<NoisyPhase> => {
      log(`noisy (${label}): ${name}, ${options.warmupSeconds} s warm-up, ${options.durationSeconds} s measured`);
      const before = await cacheMisses(child.url);
      const run = await driveLanes(child.url, lanes, options, () => child.cpu());
      const after = await cacheMisses(child.url);
      const [b, a] = run.lanes;
      const result: NoisyPhase = { b: b!, ...(a ? { a } : {}), cpuMicrosPerRequest: run.cpuMicrosPerRequest, cacheMisses: after - before };
      log(
        `noisy (${label}): ${name}: B ${b!.rps.toFixed(0)} req/s p50 ${b!.p50.toFixed(2)} ms p99 ${b!.p99.toFixed(2)} ms, ${b!.failures} failures` +
          (a ? `; A ${a.rps.toFixed(0)} req/s answered, ${a.refused} refused (${((100 * a.refused) / Math.max(1, a.responses)).toFixed(1)}%), ${a.failures} failures, its load generator at ${((100 * a.driverCpuMicros) / 1e6 / a.seconds).toFixed(0)}% of a core` : '') +
          `; ${result.cacheMisses} cache misses; load average ${os.loadavg()[0]!.toFixed(2)}`,
      );
      return result;
    };

    const alone: NoisyPhase[] = [];
    for (const { label, child } of gateways) alone.push(await phase(label, child, 'B alone', [{ requests: poll, connections: NOISY_B_CONNECTIONS }], alonePhase));
    const rounds: NoisyPhase[][] = gateways.map(() => []);
    for (let round = 0; round < NOISY_ROUNDS; round++) {
      for (const [i, { label, child }] of gateways.entries()) {
        rounds[i]!.push(
          await phase(label, child, `round ${round + 1}: A floods, B polls`, [
            { requests: poll, connections: NOISY_B_CONNECTIONS },
            { requests: floodList(), warmupRequests: floodList(), connections: NOISY_A_CONNECTIONS, refusedStatus: 429, ownProcess: true },
          ], roundPhase),
        );
      }
    }
    const sides = await Promise.all(
      gateways.map(async ({ label, child }, i): Promise<NoisyGateway> => {
        const sorted = [...rounds[i]!].sort((x, y) => x.b.p99 - y.b.p99);
        return { label, alone: alone[i]!, flood: sorted[Math.floor(sorted.length / 2)]!, rounds: rounds[i]!, peakRss: await child.peakRss() };
      }),
    );
    return { document, on: sides[0]!, off: sides[1]!, roundSeconds: roundPhase.durationSeconds };
  } finally {
    await Promise.all(gateways.map(({ child }) => child.stop()));
  }
}
