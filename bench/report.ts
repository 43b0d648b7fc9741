import type { LoadOptions, LoadResult } from './load.ts';
import type { Fixture } from './seed.ts';

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
  if (r.rows.length === 0 && r.scale.length === 0) return lines.join('\n');

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
  const failures = [...r.rows, ...r.scale].reduce((n, row) => n + row.result.failures, 0);
  if (failures > 0) lines.push('', `**${failures} requests failed** (non-2xx, GraphQL errors, socket errors or timeouts): the figures above are suspect.`);
  return lines.join('\n');
}
