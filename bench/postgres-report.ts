import type { LoadOptions } from './load.ts';
import type { PgReport, PgRow } from './postgres.ts';

/** The targets of issue 13, item 7. */
export const PG_TARGETS = {
  /** Our executed page (response cache off) against PostGraphile's, same page, same database. */
  executedVsPeer: 2.0,
  scaleRatio: 1.25,
} as const;

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const ratio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a');
const mb = (bytes: number | undefined) => (bytes === undefined ? '' : `${(bytes / 1e6).toFixed(0)} MB`);
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const failures = (n: number) => String(n);
/** The database's columns: its backends' CPU and its transactions, per response (two cells). */
const db = (row: PgRow) => (row.db ? `${int(row.db.cpuMicrosPerRequest)} | ${row.db.transactionsPerRequest.toFixed(2)}` : ' | ');

export function formatPostgres(r: PgReport, load: LoadOptions): string {
  const lines: string[] = ['### PostgreSQL, side by side with PostGraphile 5 (issue 13)', ''];
  for (const note of r.notes) lines.push(`- ${note}`);
  const main = r.stores.main;
  if (!main) return lines.join('\n');
  const seeded = [r.stores.main, r.stores.scale10k, r.stores.scale1m]
    .filter((s) => s !== undefined)
    .map((s) => `${int(s.modules)} modules in ${(s.seedMs / 1000).toFixed(1)} s`)
    .join(', ');
  lines.push(
    `- Server: PostgreSQL at ${r.host}, scratch databases created, seeded by COPY and dropped by the run (${seeded}); the SQLite stores' rows, from the same generator (fresh key secrets and IVs) (${int(main.modules)} modules across ${int(main.orgs)} orgs, ${int(main.keys.length)} keys rotated on every request, ${int(main.credentials)} sealed credentials)`,
    `- Both servers connect as the same non-superuser request role, held by the same forced row-level security policies; ${r.poolMax} pooled connections each. PostGraphile (${r.peerVersion ?? 'not run'}, Amber preset, in its own process on Node 24) gets the org from an \`X-Org-Id\` header through \`pgSettings\`: it verifies no key. Ours verifies the \`Authorization\` key on every request (key cache as configured by default).`,
    `- Same load as above: ${load.connections} connections, warm-up of one pass and ${load.warmupSeconds} s, ${load.durationSeconds} s measured per row.`,
  );
  for (const line of r.verified) lines.push(`- Checked before the load: ${line}.`);
  lines.push(
    '- PostgreSQL CPU µs/req: the CPU time of the database\'s backends (`/proc`) over the measured run, per response; transactions/req from `pg_stat_database` (the database\'s count, updated by its backends within a second or so; each transaction costs the server a BEGIN, the org\'s `set_config` and a COMMIT besides its statements, each a round trip unless pipelined).',
    '',
  );

  const peer = r.rows.find((row) => row.scenario === 'postgraphile')?.result;
  lines.push('| server: scenario | req/s | p50 ms | p99 ms | vs PostGraphile | server CPU µs/req | PostgreSQL CPU µs/req | transactions/req | failures | peak RSS |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of r.rows) {
    const x = row.result;
    const vs = row.scenario === 'postgraphile' || !peer ? '' : ratio(x.rps / peer.rps);
    lines.push(`| ${row.label} | ${int(x.rps)} | ${ms(x.p50)} | ${ms(x.p99)} | ${vs} | ${int(x.cpuMicrosPerRequest)} | ${db(row)} | ${failures(x.failures)} | ${mb(row.peakRss)} |`);
  }
  lines.push('');

  const [small, large] = r.scale.map((row) => row.result);
  const scaleP50 = small && large ? large.p50 / small.p50 : Number.NaN;
  const scaleRps = small && large ? small.rps / large.rps : Number.NaN;
  if (r.scale.length > 0) {
    lines.push(
      '#### Scale invariance on PostgreSQL: one org (100 modules), `modules(first: 20)`, as the store grows',
      '',
      'Response cache off; both gateways up at once, three interleaved rounds, each row the median round (as for SQLite above).',
      '',
      '| store | req/s | p50 ms | p99 ms | server CPU µs/req | PostgreSQL CPU µs/req | transactions/req | failures | gateway peak RSS |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const row of r.scale) {
      const x = row.result;
      lines.push(`| ${row.label} | ${int(x.rps)} | ${ms(x.p50)} | ${ms(x.p99)} | ${int(x.cpuMicrosPerRequest)} | ${db(row)} | ${failures(x.failures)} | ${mb(row.peakRss)} |`);
    }
    lines.push('', `Ratio 1M / 10k: p50 ${ratio(scaleP50)}, throughput (10k / 1M) ${ratio(scaleRps)}.`, '');
  }

  lines.push('#### Targets (PostgreSQL)', '', '| target | budget | measured | |', '|---|---:|---:|---|');
  const executed = r.rows.find((row) => row.scenario === 'pg' && row.cache === false)?.result;
  const vsPeer = executed && peer ? executed.rps / peer.rps : Number.NaN;
  const target = (name: string, budget: string, measured: string | undefined, ok: boolean) =>
    lines.push(`| ${name} | ${budget} | ${measured ?? 'n/a'} | ${measured === undefined ? 'not measured' : verdict(ok)} |`);
  target(
    'our executed page (response cache off) vs PostGraphile, throughput',
    `≥ ${PG_TARGETS.executedVsPeer.toFixed(2)}x`,
    Number.isFinite(vsPeer) ? ratio(vsPeer) : undefined,
    vsPeer >= PG_TARGETS.executedVsPeer,
  );
  target(
    'our executed page p99 lower than PostGraphile\'s',
    peer ? `< ${ms(peer.p99)} ms` : '< PostGraphile\'s',
    executed && peer ? `${ms(executed.p99)} ms` : undefined,
    Boolean(executed && peer && executed.p99 < peer.p99),
  );
  const worstScale = Math.max(scaleP50, scaleRps);
  target(
    'PostgreSQL scale ratio 1M vs 10k rows (worse of p50 and throughput)',
    `≤ ${PG_TARGETS.scaleRatio.toFixed(2)}`,
    Number.isFinite(worstScale) ? ratio(worstScale) : undefined,
    worstScale <= PG_TARGETS.scaleRatio,
  );
  const failed = [...r.rows, ...r.scale].reduce((n, row) => n + row.result.failures, 0);
  if (failed > 0) lines.push('', `**${failed} PostgreSQL-row requests failed**: the figures above are suspect.`);
  return lines.join('\n');
}
