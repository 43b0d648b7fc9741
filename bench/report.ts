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
export const TARGETS = {
  throughputVsYoga: 1.0,
  p99Ms: 15,
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

  lines.push('### Targets (issue 6)', '');
  lines.push('| target | budget | measured | |');
  lines.push('|---|---:|---:|---|');
  lines.push(`| \`modules(first: 20)\` throughput vs yoga \`{ hello }\` | ≥ ${TARGETS.throughputVsYoga.toFixed(2)}x | ${ratio(vsYoga)} | ${verdict(vsYoga >= TARGETS.throughputVsYoga)} |`);
  if (uncached && yoga) {
    const ratioOff = uncached.rps / yoga.rps;
    lines.push(`| the same, response cache off | ≥ ${TARGETS.throughputVsYoga.toFixed(2)}x | ${ratio(ratioOff)} | ${verdict(ratioOff >= TARGETS.throughputVsYoga)} |`);
  }
  if (modules) {
    lines.push(`| \`modules(first: 20)\` p99 at ${r.load.connections} connections | ≤ ${TARGETS.p99Ms} ms | ${ms(modules.p99)} ms | ${verdict(modules.p99 <= TARGETS.p99Ms)} |`);
  }
  if (uncached) {
    lines.push(`| the same, response cache off | ≤ ${TARGETS.p99Ms} ms | ${ms(uncached.p99)} ms | ${verdict(uncached.p99 <= TARGETS.p99Ms)} |`);
  }
  lines.push(`| gateway peak RSS, any row | ≤ ${TARGETS.peakRssMB} MB | ${mb(peakRss)} | ${verdict(peakRss <= TARGETS.peakRssMB * 1e6)} |`);
  const worstScale = Math.max(scaleP50, scaleRps);
  lines.push(`| scale ratio 1M vs 10k rows (worse of p50 and throughput) | ≤ ${TARGETS.scaleRatio.toFixed(2)} | ${ratio(worstScale)} | ${verdict(worstScale <= TARGETS.scaleRatio)} |`);
  const failures = [...r.rows, ...r.scale].reduce((n, row) => n + row.result.failures, 0);
  if (failures > 0) lines.push('', `**${failures} requests failed** (non-2xx, GraphQL errors, socket errors or timeouts): the figures above are suspect.`);
  return lines.join('\n');
}
