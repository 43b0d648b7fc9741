import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { drive, type LoadOptions, type LoadRequest, type LoadResult } from './load.ts';
import { formatReport, type Machine, type Report, type Row } from './report.ts';
import { CREDENTIALS_PER_ORG, moduleId, MODULES_PER_ORG, seedFixture, TARGET_ORG, type BenchKey, type Fixture } from './seed.ts';
import { formatHostileDocuments, measureHostileDocuments } from './hostile-documents.ts';
import { formatReady, measureReady } from './startup.ts';
import { PG_ROW_NAMES, runPostgres } from './postgres.ts';
import { runNoisy } from './noisy.ts';
import { formatPostgres } from './postgres-report.ts';
import type { FromChild, ToChild } from './servers/child.ts';

/**
 * `npm run bench`: seeds the stores, then drives each server in its own child process (so the
 * load generator never shares the server's event loop) with autocannon on 127.0.0.1.
 * Flags: --seconds=N --warmup=N --connections=N (defaults 8, 2, 50), --profile (every server
 * writes a CPU profile to bench/profiles/), --no-write (leave bench/results.md alone),
 * --only=NAME,... (some of bare, yoga, modules, viewer, module, writes, scale, noisy, ready, hostile, and
 * the PostgreSQL rows of bench/postgres.ts: postgraphile, pg, pg-scale; for profiling).
 * `npx tsx bench/hostile-documents.ts` runs the hostile documents alone.
 */

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');

/** The Node flags of the `start` script, so the bench's gateway runs as `npm start` runs it. */
const START_NODE_FLAGS: string[] =
  (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.match(
    /--[a-z-]+(=\S+)?/g,
  ) ?? [];

/** Servers run compiled, as `npm start` runs the gateway: no TypeScript loader in their processes. */
function buildServers(): void {
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
}

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  const hit = process.argv.find((a) => a === `--${name}` || a.startsWith(prefix));
  if (hit === undefined) return undefined;
  return hit.startsWith(prefix) ? hit.slice(prefix.length) : '';
}

function intFlag(name: string, fallback: number): number {
  const raw = flag(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number`);
  return n;
}

const load: LoadOptions = {
  connections: intFlag('connections', 50),
  warmupSeconds: intFlag('warmup', 2),
  durationSeconds: intFlag('seconds', 8),
};
const profile = flag('profile') !== undefined;
const only = flag('only')?.split(',');
const selected = (name: string) => only === undefined || only.includes(name);
const writeResults = flag('no-write') === undefined && only === undefined;
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

// ---------------------------------------------------------------------------------------------
// Servers in child processes

interface Child {
  url: string;
  /** CPU time the child has used so far, µs. */
  cpu(): Promise<number>;
  /** Peak resident set size so far, bytes: the kernel's high-water mark where /proc has it. */
  peakRss(): Promise<number>;
  stop(): Promise<void>;
}

function readHighWaterMark(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** `script` names a file of bench/servers/ (run compiled), or is an absolute path run by `execPath` (PostGraphile's Node 24). */
async function startChild(script: string, env: Record<string, string>, withProfile: boolean, execPath?: string): Promise<Child> {
  const profileDir = path.join(BENCH_DIR, 'profiles');
  if (withProfile) fs.mkdirSync(profileDir, { recursive: true });
  // The bench's children start from a clean slate: no TENANTGATE_* from the caller's shell.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTGATE_')));
  const gateway = script === 'gateway.ts';
  // Children run compiled (see buildServers), the gateway with the Node flags `npm start` uses.
  const file = path.isAbsolute(script) ? script : path.join(ROOT, 'dist', 'bench', 'servers', script.replace(/\.ts$/, '.js'));
  const child: ChildProcess = fork(file, [], {
    cwd: ROOT,
    ...(execPath ? { execPath } : {}),
    execArgv: [
      ...(withProfile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      ...(gateway ? START_NODE_FLAGS : []),
      // For experiments on the gateway only, e.g. BENCH_GATEWAY_NODE_FLAGS=--trace-gc.
      ...(gateway ? (process.env.BENCH_GATEWAY_NODE_FLAGS ?? '').split(' ').filter(Boolean) : []),
    ],
    env: { ...inherited, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let sampled = 0;
  let cpuWaiters: Array<(micros: number) => void> = [];
  child.on('message', (message: FromChild) => {
    if (message.type === 'mem') sampled = Math.max(sampled, message.rss);
    if (message.type === 'cpu') {
      const waiters = cpuWaiters;
      cpuWaiters = [];
      for (const resolve of waiters) resolve(message.micros);
    }
  });

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within 60 s`)), 60_000);
    child.on('message', (message: FromChild) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve(message.url);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code} before it was ready`));
    });
  });

  // Sampling covers systems without /proc; on Linux VmHWM is exact and usually higher.
  const send = (message: ToChild) => child.connected && child.send(message);
  const sampler = setInterval(() => send({ type: 'mem' }), 250);

  return {
    url,
    cpu: () =>
      new Promise<number>((resolve) => {
        cpuWaiters.push(resolve);
        send({ type: 'cpu' });
      }),
    async peakRss() {
      return Math.max(sampled, (child.pid && readHighWaterMark(child.pid)) || 0);
    },
    async stop() {
      clearInterval(sampler);
      send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function withChild<T>(script: string, env: Record<string, string>, fn: (child: Child) => Promise<T>, withProfile = false): Promise<T> {
  const child = await startChild(script, env, withProfile);
  try {
    return await fn(child);
  } finally {
    await child.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

const gql = (key: string, query: string, variables?: Record<string, unknown>): LoadRequest => ({
  headers: { authorization: `Bearer ${key}` },
  body: JSON.stringify(variables ? { query, variables } : { query }),
});

const MODULES = 'query Modules { modules(first: 20) { edges { node { id name version enabled } } totalCount } }';
const VIEWER = 'query Viewer { viewer { org { id name } apiKey { id name prefix } scopes } }';
const MODULE = 'query Module($id: ID!) { module(id: $id) { id name version enabled hasCredential } }';
const SET_CREDENTIAL =
  'mutation SetCredential($moduleId: ID!, $secret: JSONObject!) { setCredential(moduleId: $moduleId, secret: $secret) { moduleId fields updatedAt } }';
const ENABLE = 'mutation EnableModule($id: ID!) { enableModule(id: $id) { id enabled } }';
const AGENT_READ = 'query AgentRead($id: ID!) { module(id: $id) { id name version config enabled } credentialSecret(moduleId: $id) }';
/** The origin of the dashboard in the mix (allowed by TENANTGATE_CORS_ORIGINS in gatewayEnv). */
const DASHBOARD_ORIGIN = 'https://dashboard.bench.example';
const DISABLE = 'mutation DisableModule($id: ID!) { disableModule(id: $id) { id enabled } }';

interface Scenario {
  id: string;
  name: string;
  requests: LoadRequest[];
  /** Checked on a few requests before the load, so a broken scenario fails loudly, not fast. */
  check(data: Record<string, unknown>): boolean;
}

function gatewayScenarios(keys: BenchKey[]): Scenario[] {
  const writers = keys.filter((k) => k.scopes.includes('modules:write') && k.scopes.includes('credentials:write'));
  return [
    {
      id: 'modules',
      name: 'modules(first: 20)',
      requests: keys.map((k) => gql(k.secret, MODULES)),
      check: (d) => {
        const m = d.modules as { edges: unknown[]; totalCount: number } | undefined;
        return m?.edges.length === 20 && m.totalCount === MODULES_PER_ORG;
      },
    },
    {
      id: 'viewer',
      name: 'viewer',
      requests: keys.map((k) => gql(k.secret, VIEWER)),
      check: (d) => typeof (d.viewer as { org?: { id?: unknown } } | undefined)?.org?.id === 'string',
    },
    {
      id: 'module',
      name: 'module(id)',
      requests: keys.map((k, i) => gql(k.secret, MODULE, { id: moduleId((i * 37) % MODULES_PER_ORG) })),
      check: (d) => d.module !== null && typeof d.module === 'object',
    },
    {
      id: 'writes',
      name: 'write mix',
      // Half setCredential, a quarter each disableModule and enableModule, across every org.
      requests: writers.map((k, i) => {
        const id = moduleId((i * 7) % MODULES_PER_ORG);
        switch (i % 4) {
          case 0:
          case 1:
            return gql(k.secret, SET_CREDENTIAL, { moduleId: id, secret: { token: `tok-${i}`, user: 'bench' } });
          case 2:
            return gql(k.secret, DISABLE, { id });
          default:
            return gql(k.secret, ENABLE, { id });
        }
      }),
      check: (d) => Object.values(d).every((v) => v !== null && typeof v === 'object'),
    },
    {
      id: 'mix',
      name: 'realistic mix (agents read a module and reveal its credential, dashboards poll with an Origin, 1 in 10 a write)',
      // Per org, ten requests: six agent reads of distinct modules (each with a credential, so
      // every one executes: credentialSecret is never cached), three dashboard polls of the module
      // list from a browser origin, and one write to the same org, which makes its next poll a miss.
      requests: writers.flatMap((k, i) => {
        const id = (m: number) => moduleId(m % CREDENTIALS_PER_ORG);
        const poll: LoadRequest = { headers: { ...gql(k.secret, MODULES).headers, origin: DASHBOARD_ORIGIN }, body: gql(k.secret, MODULES).body };
        const write = i % 2 === 0
          ? gql(k.secret, SET_CREDENTIAL, { moduleId: id(i), secret: { token: `tok-${i}`, user: 'bench' } })
          : gql(k.secret, i % 4 === 1 ? DISABLE : ENABLE, { id: moduleId(CREDENTIALS_PER_ORG + (i % 40)) });
        return [
          gql(k.secret, AGENT_READ, { id: id(i) }),
          poll,
          gql(k.secret, AGENT_READ, { id: id(i + 1) }),
          gql(k.secret, AGENT_READ, { id: id(i + 2) }),
          poll,
          gql(k.secret, AGENT_READ, { id: id(i + 3) }),
          write,
          gql(k.secret, AGENT_READ, { id: id(i + 4) }),
          poll,
          gql(k.secret, AGENT_READ, { id: id(i + 5) }),
        ];
      }),
      check: (d) => Object.values(d).every((v) => v !== null && typeof v === 'object'),
    },
  ];
}

async function preflight(url: string, scenario: Scenario): Promise<void> {
  for (const request of scenario.requests.slice(0, 4)) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...request.headers },
      body: request.body,
    });
    const text = await res.text();
    let body: { data?: Record<string, unknown>; errors?: unknown } | undefined;
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = undefined;
    }
    if (res.status !== 200 || !body?.data || body.errors || !scenario.check(body.data)) {
      throw new Error(`${scenario.name}: unexpected answer before the load (HTTP ${res.status}): ${text.slice(0, 500)}`);
    }
  }
}

async function measure(child: Child, scenario: Scenario, options: LoadOptions = load): Promise<LoadResult> {
  const { url } = child;
  await preflight(url, scenario);
  log(`${scenario.name}: ${options.warmupSeconds} s warm-up, ${options.durationSeconds} s measured, ${options.connections} connections`);
  const result = await drive(url, scenario.requests, options, () => child.cpu());
  log(
    `${scenario.name}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ` +
      `${result.cpuMicrosPerRequest.toFixed(0)} µs server CPU/req, ${result.failures} failures`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------
// Machine

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function machine(): Machine {
  const cpus = os.cpus();
  const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bench', 'package.json']);
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverage: os.loadavg()[0] ?? 0,
    commit: `${git(['rev-parse', '--short', 'HEAD']) ?? 'unknown'}${dirty ? ' (with local changes)' : ''}`,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

// ---------------------------------------------------------------------------------------------

function gatewayEnv(dir: string, fixture: Fixture, file: string): Record<string, string> {
  return {
    TENANTGATE_DATA_DIR: dir,
    TENANTGATE_DATABASE: path.join(dir, file),
    TENANTGATE_MASTER_KEY: fixture.masterKey,
    TENANTGATE_PRODUCTION: 'true',
    TENANTGATE_LOG_LEVEL: 'warn',
    TENANTGATE_HOST: '127.0.0.1',
    TENANTGATE_PORT: '0',
    TENANTGATE_CORS_ORIGINS: DASHBOARD_ORIGIN,
  };
}

const CACHE_OFF = { TENANTGATE_RESPONSE_CACHE_BYTES: '0' };
/** The baseline of compiled execution: every operation interpreted by graphql-js, as before it. */
const INTERPRETED = { TENANTGATE_COMPILED_EXECUTION: 'false' };
/**
 * The scale pair sends all 50 connections as one org, to measure the store as it grows; the
 * fair-sharing queue (TENANTGATE_ORG_QUEUE, 32 by default) would answer the connections past it
 * with 429s, which the noisy-neighbour row measures, so here it takes them all.
 */
export const ONE_ORG_LOAD = { TENANTGATE_ORG_QUEUE: '1000' };
const SCALE_ROUNDS = 3;

/** The round with the median throughput (its latencies and CPU come with it, from one run). */
function medianRound(results: LoadResult[]): LoadResult {
  const sorted = [...results].sort((a, b) => a.rps - b.rps);
  const median = sorted[Math.floor(sorted.length / 2)];
  if (!median) throw new Error('no rounds measured');
  return median;
}

async function main(): Promise<void> {
  const started = performance.now();
  const before = machine();
  buildServers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-bench-'));
  try {
    const fixture = await seedFixture(dir, log, { scale: selected('scale') });
    const seedSeconds = (performance.now() - started) / 1000;
    const mainKeys = fixture.stores.main.keys;

    // The baselines get the same request bytes as the gateway's modules query would, key included.
    const hello: Scenario = {
      id: 'hello',
      name: '{ hello }',
      requests: mainKeys.map((k) => gql(k.secret, '{ hello }')),
      check: (d) => d.hello === 'world',
    };
    const ready = selected('ready')
      ? await measureReady(ROOT, START_NODE_FLAGS, gatewayEnv(dir, fixture, fixture.stores.main.file), log)
      : undefined;
    const rows: Row[] = [];
    if (selected('bare')) {
      rows.push({ kind: 'bare', label: 'node:http, fixed JSON body', result: await withChild('bare-http.ts', {}, (c) => measure(c, hello), profile) });
    }
    if (selected('yoga')) {
      rows.push({ kind: 'yoga', label: 'graphql-yoga defaults, `{ hello }`', result: await withChild('yoga-hello.ts', {}, (c) => measure(c, hello), profile) });
    }

    const scenarios = gatewayScenarios(mainKeys).filter((s) => selected(s.id));
    if (scenarios.length > 0) await withChild(
      'gateway.ts',
      gatewayEnv(dir, fixture, fixture.stores.main.file),
      async (gateway) => {
        for (const scenario of scenarios) {
          const result = await measure(gateway, scenario);
          rows.push({ kind: 'gateway', label: `gateway: ${scenario.name}`, scenario: scenario.id, cache: true, result, peakRss: await gateway.peakRss() });
        }
      },
      profile,
    );

    // The same page with the response cache off: what executing it costs.
    const uncached = scenarios.filter((s) => s.id === 'modules');
    if (uncached.length > 0) await withChild(
      'gateway.ts',
      { ...gatewayEnv(dir, fixture, fixture.stores.main.file), ...CACHE_OFF },
      async (gateway) => {
        for (const scenario of uncached) {
          const result = await measure(gateway, { ...scenario, name: `${scenario.name}, response cache off` });
          rows.push({ kind: 'gateway', label: `gateway, response cache off: ${scenario.name}`, scenario: scenario.id, cache: false, result, peakRss: await gateway.peakRss() });
        }
      },
      profile,
    );

    // The executing rows again with every operation interpreted (graphql-js), the engine before
    // compiled execution: its gain, measured in the same run. The page runs with the response
    // cache off (cached, it would measure the cache, not the engine).
    for (const [ids, env] of [[['viewer', 'mix'], {}], [['modules'], CACHE_OFF]] as const) {
      const picked = scenarios.filter((s) => (ids as readonly string[]).includes(s.id));
      if (picked.length === 0) continue;
      const cache = env !== CACHE_OFF;
      await withChild(
        'gateway.ts',
        { ...gatewayEnv(dir, fixture, fixture.stores.main.file), ...INTERPRETED, ...env },
        async (gateway) => {
          for (const scenario of picked) {
            const label = `gateway, compiled execution off${cache ? '' : ', response cache off'}: ${scenario.name}`;
            const result = await measure(gateway, { ...scenario, name: label.slice('gateway, '.length) });
            rows.push({ kind: 'gateway', label, scenario: `${scenario.id}-interpreted`, cache, result, peakRss: await gateway.peakRss() });
          }
        },
        profile,
      );
    }

    // The scale pair runs interleaved: both gateways up at once, then SCALE_ROUNDS short rounds of
    // 10k then 1M. On a shared machine, background load drifts over a run; alternating puts the
    // same drift on both sides, and the median round of each side is reported.
    const scale: Row[] = [];
    if (fixture.stores.scale) {
      const pair = [fixture.stores.scale.scale10k, fixture.stores.scale.scale1m];
      const children = await Promise.all(
        // Cache off: the pair measures what one org's query costs as the store grows.
        pair.map((store) => startChild('gateway.ts', { ...gatewayEnv(dir, fixture, store.file), ...CACHE_OFF, ...ONE_ORG_LOAD }, profile)),
      );
      try {
        const rounds: LoadResult[][] = pair.map(() => []);
        const roundLoad: LoadOptions = { ...load, warmupSeconds: 1, durationSeconds: Math.max(1, Math.round(load.durationSeconds / 2)) };
        for (let round = 0; round < SCALE_ROUNDS; round++) {
          for (const [i, store] of pair.entries()) {
            const scenario = gatewayScenarios(store.keys.filter((k) => k.orgId === TARGET_ORG))[0];
            if (!scenario) throw new Error('no modules scenario');
            const name = `${scenario.name} on ${store.modules.toLocaleString('en-US')} rows, round ${round + 1}/${SCALE_ROUNDS}`;
            rounds[i]!.push(await measure(children[i]!, { ...scenario, name }, roundLoad));
          }
        }
        for (const [i, store] of pair.entries()) {
          scale.push({
            kind: 'gateway',
            label: `${store.modules.toLocaleString('en-US')} module rows (${store.orgs.toLocaleString('en-US')} orgs)`,
            result: medianRound(rounds[i]!),
            peakRss: await children[i]!.peakRss(),
          });
        }
      } finally {
        await Promise.all(children.map((c) => c.stop()));
      }
    }

    // The noisy neighbour (issue 14): org A floods while org B polls, with per-org admission on and off.
    const noisy = selected('noisy')
      ? await runNoisy({ startChild, gatewayEnv: gatewayEnv(dir, fixture, fixture.stores.main.file), keys: mainKeys, load, profile, log })
      : undefined;

    // The PostgreSQL rows (issue 13): seeded into scratch databases of their own, dropped after.
    const postgres = PG_ROW_NAMES.some(selected)
      ? await runPostgres({
          startChild,
          measure,
          gatewayEnv: (database, masterKey) => ({ ...gatewayEnv(dir, fixture, ''), TENANTGATE_DATABASE: database, TENANTGATE_MASTER_KEY: masterKey }),
          load,
          profile,
          selected,
          explicit: only !== undefined && PG_ROW_NAMES.some((name) => only.includes(name)),
          log,
        })
      : undefined;

    const report: Report = {
      machine: before,
      loadAverageAfter: os.loadavg()[0] ?? 0,
      load,
      seedSeconds,
      totalSeconds: (performance.now() - started) / 1000,
      stores: fixture.stores,
      rows,
      scale,
      ...(noisy ? { noisy } : {}),
    };
    const seeded = fixture.stores.main;
    const markdown = formatReport(report) + (ready ? formatReady(ready, `the main store (${seeded.modules.toLocaleString('en-US')} modules, ${seeded.orgs.toLocaleString('en-US')} orgs, ${seeded.keys.length.toLocaleString('en-US')} keys, ${seeded.credentials.toLocaleString('en-US')} credentials)`) : '');
    // In this process, after the load: the costliest documents within the limits (bench/hostile-documents.ts).
    const hostile = selected('hostile') ? await measureHostileDocuments() : undefined;
    const withPostgres = postgres === undefined ? markdown : `${markdown}\n\n${formatPostgres(postgres, load)}`;
    const output = hostile === undefined ? withPostgres : `${withPostgres}\n\n${formatHostileDocuments(hostile)}`;
    process.stdout.write(`${output}\n`);
    if (writeResults) {
      fs.writeFileSync(path.join(BENCH_DIR, 'results.md'), `${output}\n`);
      log('wrote bench/results.md');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
