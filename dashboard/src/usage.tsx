import { gql } from './api.ts';
import { useSession } from './session-context.ts';
import type { Usage, UsageBucket } from './types.ts';
import { ErrorNote, formatDay, formatNumber, formatTime, Panel, useLoad } from './ui.tsx';

const DAYS = 30;
const USAGE = `query DashboardUsage($from: DateTime!, $to: DateTime!) {
  usage { periodStart periodEnd runUnits requests quota remaining nearQuota warnAt requestsPerMinute }
  usageSeries(from: $from, to: $to, granularity: DAY) { start runUnits requests }
}`;

export function UsagePanel() {
  const { key, changes } = useSession();
  const usage = useLoad(async () => {
    const to = new Date();
    const from = new Date(Date.UTC(to.getUTCFullYear(), to.getUTCMonth(), to.getUTCDate() - (DAYS - 1)));
    return gql<{ usage: Usage; usageSeries: UsageBucket[] }>(key, USAGE, { from: from.toISOString(), to: to.toISOString() }, 'usage:read');
  }, [key, changes]);

  return (
    <Panel id="usage" title="Usage this month">
      {usage.error ? <ErrorNote error={usage.error} /> : null}
      {!usage.data && !usage.error ? <p class="muted">Loading usage…</p> : null}
      {usage.data ? (
        <div class="usage-body">
          <UsageSummary usage={usage.data.usage} />
          <UsageChart buckets={usage.data.usageSeries} />
        </div>
      ) : null}
    </Panel>
  );
}

function UsageSummary(props: { usage: Usage }) {
  const { usage } = props;
  const share = usage.quota ? Math.min(1, usage.runUnits / usage.quota) : 0;
  return (
    <div class="usage-summary">
      <dl class="figures">
        <div>
          <dt>Run units</dt>
          <dd>
            {formatNumber(usage.runUnits)}
            {usage.quota !== null ? <span class="muted"> of {formatNumber(usage.quota)}</span> : <span class="muted"> (no quota)</span>}
          </dd>
        </div>
        <div>
          <dt>Requests</dt>
          <dd>{formatNumber(usage.requests)}</dd>
        </div>
        <div>
          <dt>Rate limit</dt>
          <dd>{usage.requestsPerMinute !== null ? `${formatNumber(usage.requestsPerMinute)} / min` : 'none'}</dd>
        </div>
        <div>
          <dt>Resets</dt>
          <dd>{formatTime(usage.periodEnd)}</dd>
        </div>
      </dl>
      {usage.quota !== null ? (
        <div class="quota">
          <label for="quota-meter">Quota used: {Math.round(share * 100)}%</label>
          <meter id="quota-meter" min={0} max={usage.quota} value={usage.runUnits} low={usage.quota * usage.warnAt} high={usage.quota * 0.99} optimum={0} />
          {usage.nearQuota ? (
            <p class="note note-warn">Near the quota: {usage.remaining !== null ? formatNumber(usage.remaining) : 0} run units left this month.</p>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

const WIDTH = 640;
const HEIGHT = 150;
const PAD = { top: 12, right: 8, bottom: 22, left: 44 };

/** Run units a day as bars, requests a day as a line on their own scale: an inline SVG, no library. */
export function UsageChart(props: { buckets: UsageBucket[] }) {
  const { buckets } = props;
  if (buckets.length === 0) return <p class="muted">No usage recorded yet.</p>;
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const maxUnits = Math.max(1, ...buckets.map((b) => b.runUnits));
  const maxRequests = Math.max(1, ...buckets.map((b) => b.requests));
  const step = innerW / buckets.length;
  const barW = Math.max(1, step * 0.7);
  const y = (value: number, max: number) => PAD.top + innerH - (value / max) * innerH;
  const line = buckets.map((b, i) => `${(PAD.left + step * i + step / 2).toFixed(1)},${y(b.requests, maxRequests).toFixed(1)}`).join(' ');
  const totalUnits = buckets.reduce((sum, b) => sum + b.runUnits, 0);
  const totalRequests = buckets.reduce((sum, b) => sum + b.requests, 0);
  const first = buckets[0];
  const last = buckets[buckets.length - 1];
  const summary = `Daily use from ${first ? formatDay(first.start) : ''} to ${last ? formatDay(last.start) : ''}: ${formatNumber(totalUnits)} run units (at most ${formatNumber(maxUnits)} a day) and ${formatNumber(totalRequests)} requests.`;
  const labelEvery = Math.ceil(buckets.length / 6);

  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-labelledby="usage-chart-caption">
        <line class="axis" x1={PAD.left} x2={WIDTH - PAD.right} y1={PAD.top + innerH} y2={PAD.top + innerH} />
        <text class="tick" x={PAD.left - 6} y={PAD.top + 4} text-anchor="end">
          {formatNumber(maxUnits)}
        </text>
        <text class="tick" x={PAD.left - 6} y={PAD.top + innerH} text-anchor="end">
          0
        </text>
        {buckets.map((b, i) => {
          const top = y(b.runUnits, maxUnits);
          return (
            <rect key={b.start} class="bar" x={PAD.left + step * i + (step - barW) / 2} y={top} width={barW} height={PAD.top + innerH - top}>
              <title>{`${formatDay(b.start)}: ${formatNumber(b.runUnits)} run units, ${formatNumber(b.requests)} requests`}</title>
            </rect>
          );
        })}
        <polyline class="requests-line" points={line} fill="none" />
        {buckets.map((b, i) =>
          i % labelEvery === 0 ? (
            <text key={`label-${b.start}`} class="tick" x={PAD.left + step * i + step / 2} y={HEIGHT - 6} text-anchor="middle">
              {formatDay(b.start)}
            </text>
          ) : null,
        )}
      </svg>
      <figcaption id="usage-chart-caption">
        <span class="legend legend-units">Run units a day</span>
        <span class="legend legend-requests">Requests a day (own scale, up to {formatNumber(maxRequests)})</span>
        <span class="sr-only">{summary}</span>
      </figcaption>
    </figure>
  );
}
