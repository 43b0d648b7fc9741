import type { LoadOptions, LoadResult } from './load.ts';
import type { Fixture } from './seed.ts';
import { NOISY_A_CONNECTIONS, NOISY_A_ORG, NOISY_B_CONNECTIONS, NOISY_B_ORG, type NoisyGateway, type NoisyResult } from './noisy.ts';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  os: string;
  /** One-minute load average when the run started: other work on the machine shows here. */
  loadAverage: number;
  commit: string;
  date: string;
}

export interface Row {
  kind: 'bare' | 'yoga' | 'gateway';
  label: string;
  /** Gateway rows: the scenario id, and whether the response cache was on (the default). */
  scenario?: string;
  cache?: boolean;
  result: LoadResult;
  /** Gateway only: the process's peak RSS up to the end of this row. */
  peakRss?: number;
}

export interface Report {
  machine: Machine;
  loadAverageAfter: number;
  load: LoadOptions;
  seedSeconds: number;
  totalSeconds: number;
  stores: Fixture['stores'];
  rows: Row[];
  scale: Row[];
  /** The noisy-neighbour row (bench/noisy.ts), when it ran. */
  noisy?: NoisyResult;
}

/** The issue 6 budget. */
/** The budgets of DESIGN.md and issue 12, each as a ratio to yoga `{ hello }` in the same run. */
export const TARGETS = {
  cachedVsYoga: 3.0,
  cachedP99Ms: 15,
  executedVsYoga: 1.0,
  mixVsYoga: 1.0,
  mixP99Ms: 20,
  peakRssMB: 150,
  scaleRatio: 1.25,
  /** Issue 14: B's p99 under A's flood at most this many times its p99 alone, or noisyFloorMs, whichever is larger. */
  noisyVsAlone: 2,
  noisyFloorMs: 10,
} as const;

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const ratio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a');
const mb = (bytes: number | undefined) => (bytes === undefined ? '' : `${(bytes / 1e6).toFixed(0)} MB`);
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');

export function formatReport(r: Report): string {
  const m = r.machine;
  const bare = r.rows.find((row) => row.kind === 'bare')?.result;
  const yoga = r.rows.find((row) => row.kind === 'yoga')?.result;
  const modules = r.rows.find((row) => row.scenario === 'modules' && row.cache)?.result;
  const uncached = r.rows.find((row) => row.scenario === 'modules' && !row.cache)?.result;
  const gatewayRss = [...r.rows, ...r.scale].map((row) => row.peakRss ?? 0);
  const peakRss = Math.max(0, ...gatewayRss);
  const [small, large] = r.scale.map((row) => row.result);
  const scaleP50 = small && large ? large.p50 / small.p50 : Number.NaN;
  const scaleRps = small && large ? small.rps / large.rps : Number.NaN;
  const vsYoga = modules && yoga ? modules.rps / yoga.rps : Number.NaN;
  const s = r.stores;

  const lines: string[] = [];
  lines.push('## Benchmark results', '');
  lines.push(
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(0)} GiB; Node ${m.node}; ${m.os}`,
    `- Load average (1 min) at start ${m.loadAverage.toFixed(2)}, at end ${r.loadAverageAfter.toFixed(2)} (the load generator itself keeps one core busy)`,
    `- Commit ${m.commit}, ${m.date}; whole run ${r.totalSeconds.toFixed(0)} s (seeding ${r.seedSeconds.toFixed(0)} s)`,
    `- Load: autocannon, ${r.load.connections} connections on 127.0.0.1, warm-up of one pass over each scenario's requests and ${r.load.warmupSeconds} s, then ${r.load.durationSeconds} s measured per row; each server in its own process`,
    `- Store: ${int(s.main.modules)} modules across ${int(s.main.orgs)} orgs, ${int(s.main.keys.length)} keys (rotated on every request), ${int(s.main.credentials)} sealed credentials; gateway in production mode, logging at warn`,
    '',
  );
  // Only PostgreSQL rows were asked for (--only): they follow in their own section.
  if (r.rows.length === 0 && r.scale.length === 0 && r.noisy === undefined) return lines.join('\n');
  if (r.rows.length === 0 && r.scale.length === 0) return [...lines, ...noisySection(r.noisy!), ...noisyTargets(r.noisy!)].join('\n');

  lines.push('| server: scenario | req/s | p50 ms | p99 ms | vs yoga `{ hello }` | vs node:http | server CPU µs/req | failures | gateway peak RSS |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of r.rows) {
    const x = row.result;
    lines.push(
      `| ${row.label} | ${int(x.rps)} | ${ms(x.p50)} | ${ms(x.p99)} | ${row.kind === 'yoga' || !yoga ? '' : ratio(x.rps / yoga.rps)} | ${row.kind === 'bare' || !bare ? '' : ratio(x.rps / bare.rps)} | ${int(x.cpuMicrosPerRequest)} | ${x.failures} | ${mb(row.peakRss)} |`,
    );
  }
  lines.push('');

  lines.push(
    '### Scale invariance: one org (100 modules), `modules(first: 20)`, as the store grows',
    '',
    'Response cache off, so that every request reads the store. Both gateways run at once and are driven in three interleaved rounds (10k, 1M, 10k, 1M, ...; 1 s warm-up, half the measured time each); each row is the round with the median throughput.',
    '',
  );
  lines.push('| store | req/s | p50 ms | p99 ms | server CPU µs/req | failures | gateway peak RSS |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const row of r.scale) {
    const x = row.result;
    lines.push(`| ${row.label} | ${int(x.rps)} | ${ms(x.p50)} | ${ms(x.p99)} | ${int(x.cpuMicrosPerRequest)} | ${x.failures} | ${mb(row.peakRss)} |`);
  }
  lines.push('', `Ratio 1M / 10k: p50 ${ratio(scaleP50)}, throughput (10k / 1M) ${ratio(scaleRps)}.`, '');

  if (r.noisy) lines.push(...noisySection(r.noisy));

  lines.push('### Targets', '');
  lines.push('| target | budget | measured | |');
  lines.push('|---|---:|---:|---|');
  const row = (target: string, budget: string, measured: number, text: string, ok: boolean) =>
    lines.push(`| ${target} | ${budget} | ${Number.isFinite(measured) ? text : 'n/a'} | ${verdict(Number.isFinite(measured) && ok)} |`);
  const vs = (x: { rps: number } | undefined) => (x && yoga ? x.rps / yoga.rps : Number.NaN);
  const viewer = r.rows.find((x) => x.scenario === 'viewer' && x.cache)?.result;
  const mix = r.rows.find((x) => x.scenario === 'mix' && x.cache)?.result;
  row('cached `modules(first: 20)` throughput vs yoga `{ hello }`', `≥ ${TARGETS.cachedVsYoga.toFixed(2)}x`, vsYoga, ratio(vsYoga), vsYoga >= TARGETS.cachedVsYoga);
  row(`cached \`modules(first: 20)\` p99 at ${r.load.connections} connections`, `≤ ${TARGETS.cachedP99Ms} ms`, modules?.p99 ?? Number.NaN, `${ms(modules?.p99 ?? Number.NaN)} ms`, (modules?.p99 ?? Infinity) <= TARGETS.cachedP99Ms);
  row('executed `viewer` vs yoga `{ hello }`', `≥ ${TARGETS.executedVsYoga.toFixed(2)}x`, vs(viewer), ratio(vs(viewer)), vs(viewer) >= TARGETS.executedVsYoga);
  row('`modules(first: 20)`, response cache off, vs yoga `{ hello }`', `≥ ${TARGETS.executedVsYoga.toFixed(2)}x`, vs(uncached), ratio(vs(uncached)), vs(uncached) >= TARGETS.executedVsYoga);
  row('realistic mix vs yoga `{ hello }`', `≥ ${TARGETS.mixVsYoga.toFixed(2)}x`, vs(mix), ratio(vs(mix)), vs(mix) >= TARGETS.mixVsYoga);
  row('realistic mix p99', `≤ ${TARGETS.mixP99Ms} ms`, mix?.p99 ?? Number.NaN, `${ms(mix?.p99 ?? Number.NaN)} ms`, (mix?.p99 ?? Infinity) <= TARGETS.mixP99Ms);
  row('gateway peak RSS, any row', `≤ ${TARGETS.peakRssMB} MB`, peakRss, mb(peakRss), peakRss <= TARGETS.peakRssMB * 1e6);
  const worstScale = Math.max(scaleP50, scaleRps);
  row('scale ratio 1M vs 10k rows (worse of p50 and throughput)', `≤ ${TARGETS.scaleRatio.toFixed(2)}`, worstScale, ratio(worstScale), worstScale <= TARGETS.scaleRatio);
  if (r.noisy) lines.push(...noisyTargetRows(r.noisy));
  const failures = [...r.rows, ...r.scale].reduce((n, row) => n + row.result.failures, 0) + (r.noisy ? noisyFailures(r.noisy) : 0);
  if (failures > 0) lines.push('', `**${failures} requests failed** (non-2xx, GraphQL errors, socket errors or timeouts): the figures above are suspect.`);
  return lines.join('\n');
}

const share = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : 'n/a');

/** The noisy row's budget for B's p99 under the flood: max(2 x B's p99 alone, 10 ms). */
export const noisyBudget = (gateway: NoisyGateway) => Math.max(TARGETS.noisyVsAlone * gateway.alone.b.p99, TARGETS.noisyFloorMs);

function noisyFailures(n: NoisyResult): number {
  return [n.on, n.off].reduce((sum, g) => sum + g.alone.b.failures + g.rounds.reduce((k, p) => k + p.b.failures + (p.a?.failures ?? 0), 0), 0);
}

function noisySection(n: NoisyResult): string[] {
  const d = n.document;
  const lines = [
    `### Noisy neighbour: org A floods on ${NOISY_A_CONNECTIONS} connections while org B polls on ${NOISY_B_CONNECTIONS}`,
    '',
    `B (\`${NOISY_B_ORG}\`) polls its dashboard, \`modules(first: 20)\`, which the response cache answers. A (\`${NOISY_A_ORG}\`) sends the costliest read the limits let through: ${d.fullPages} aliased \`modules(first: 100)\` pages with every field${d.extraPage > 0 ? ` and one of ${d.extraPage}` : ''} (${int(d.bytes)} bytes; ${int(d.answerBytes)} bytes answered), every request with variables of its own so that the response cache never answers it. Both gateways are up at once: "admission on" at the defaults (TENANTGATE_ORG_MAX_IN_FLIGHT=4, TENANTGATE_ORG_QUEUE=32), "admission off" with 10000 and 0. B alone runs ${n.on.alone.b.seconds.toFixed(0)} s on each; the flood runs in ${n.on.rounds.length} interleaved rounds of ${n.roundSeconds} s per gateway (on, off, on, ...), and the row is each side's round with the median B p99. B's and A's load generators are separate autocannon instances, A's in a process of its own (in one process, A's large answers delayed B's by hundreds of ms on the client side). A's 429 (RATE_LIMITED, limit concurrency) is expected; any other answer but 200, on either side, is a failure.`,
    '',
    '| gateway: phase | B req/s | B p50 ms | B p99 ms | A answered req/s | A p50 ms | A p99 ms | A 429 share | server CPU µs/resp | cache misses | failures |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const g of [n.on, n.off]) {
    for (const [phase, p] of [['B alone', g.alone], ['A floods (median round)', g.flood]] as const) {
      const a = p.a;
      const failures = p.b.failures + (a?.failures ?? 0);
      lines.push(
        `| ${g.label}: ${phase} | ${int(p.b.rps)} | ${ms(p.b.p50)} | ${ms(p.b.p99)} | ${a ? int(a.rps) : ''} | ${a ? ms(a.p50) : ''} | ${a ? ms(a.p99) : ''} | ${a ? share(a.refused, a.responses) : ''} | ${int(p.cpuMicrosPerRequest)} | ${int(p.cacheMisses)} | ${failures} |`,
      );
    }
  }
  const each = (g: NoisyGateway) => g.rounds.map((p) => ms(p.b.p99)).join(', ');
  lines.push(
    '',
    `B's p99 in each round: admission on ${each(n.on)} ms; admission off ${each(n.off)} ms. Median round vs alone: admission on ${ratio(n.on.flood.b.p99 / n.on.alone.b.p99)}, admission off ${ratio(n.off.flood.b.p99 / n.off.alone.b.p99)}.`,
    '',
  );
  return lines;
}

function noisyTargetRows(n: NoisyResult): string[] {
  const budget = noisyBudget(n.on);
  const p99 = n.on.flood.b.p99;
  const a = n.on.flood.a;
  const refused = a ? a.refused / Math.max(1, a.responses) : Number.NaN;
  const cell = (x: number, text: string) => (Number.isFinite(x) ? text : 'n/a');
  return [
    `| noisy neighbour: B's p99 under A's flood (admission on; off: ${ms(n.off.flood.b.p99)} ms) | ≤ max(${TARGETS.noisyVsAlone}x alone, ${TARGETS.noisyFloorMs} ms) = ${ms(budget)} ms | ${cell(p99, `${ms(p99)} ms`)} | ${verdict(Number.isFinite(p99) && p99 <= budget)} |`,
    `| noisy neighbour: A's 429 share (admission on) | > 0 | ${cell(refused, share(a?.refused ?? 0, a?.responses ?? 0))} | ${verdict(Number.isFinite(refused) && refused > 0)} |`,
  ];
}

function noisyTargets(n: NoisyResult): string[] {
  const lines = ['### Targets', '', '| target | budget | measured | |', '|---|---:|---:|---|', ...noisyTargetRows(n)];
  const failures = noisyFailures(n);
  if (failures > 0) lines.push('', `**${failures} requests failed** (not 200, GraphQL errors, socket errors or timeouts; A's 429s apart): the figures above are suspect.`);
  return lines;
}
