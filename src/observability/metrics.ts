import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import { STORE_ERROR_KINDS, type StoreErrorKind } from '../store/errors.ts';
import type { AuditAction } from '../store/types.ts';

/** Latency buckets in seconds: a gateway answer takes a millisecond or two; the tail matters. */
const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Cell {
  count: number;
  sum: number;
  /** Non-cumulative: buckets[i] counts observations <= BOUNDS[i] and > BOUNDS[i-1]. */
  buckets: Float64Array;
}

interface SampleValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

export type AuthFailureReason = 'missing' | 'invalid' | 'rate_limited';

/**
 * The gateway's Prometheus metrics. No label grows with the number of orgs or keys: `operation`
 * is a root field of the schema (or one of a few fixed words), `outcome` is `ok` or an error code
 * from a fixed list, `reason` and `kind` are fixed lists.
 *
 * The per-request path is two number increments in a preallocated cell: prom-client's own
 * labelled Counter and Histogram hash a label object on every call, so request counts and
 * latencies live in plain cells and are handed to prom-client only when /metrics is scraped.
 */
const RUN_UNIT_RESULTS = ['recorded', 'repeat', 'quota_exceeded'] as const;
export type RunUnitResult = (typeof RUN_UNIT_RESULTS)[number];

export class Metrics {
  readonly registry = new Registry();
  readonly #cells = new Map<string, Map<string, Cell>>();
  readonly #authFailures: Counter<'reason'>;
  readonly #storeErrors: Counter<'kind'>;
  readonly #runUnits: Counter;
  readonly #runUnitReports: Counter<'result'>;
  readonly #rateLimitRefusals: Counter<'limit'>;
  readonly #auditRecords: Counter<'action'>;
  readonly #auditVerifyFailures: Counter;
  readonly #subscriptionEvents: Counter<'kind'>;
  /** Plain numbers on the request path, handed to prom-client on scrape (see above). */
  readonly #cacheResults = { hit: 0, miss: 0 };
  readonly #executions = { compiled: 0, interpreted: 0 };

  #processMetrics = false;

  constructor() {
    const cells = this.#cells;
    const each = function* () {
      for (const [operation, byOutcome] of cells) for (const [outcome, cell] of byOutcome) yield { operation, outcome, cell };
    };
    const requests = {
      name: 'tenantgate_graphql_requests_total',
      help: 'GraphQL requests by operation (root field) and outcome (ok, or the error code)',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({
        ...requests,
        values: [...each()].map(({ operation, outcome, cell }): SampleValue => ({ labels: { operation, outcome }, value: cell.count })),
      }),
    };
    const duration = {
      name: 'tenantgate_graphql_request_duration_seconds',
      help: 'GraphQL request latency in seconds, from arrival to response, by operation and outcome',
      type: 'histogram',
      aggregator: 'sum',
      get: async () => {
        const values: SampleValue[] = [];
        for (const { operation, outcome, cell } of each()) {
          let acc = 0;
          BOUNDS.forEach((le, i) => {
            acc += cell.buckets[i] ?? 0;
            values.push({ labels: { operation, outcome, le }, value: acc, metricName: `${duration.name}_bucket` });
          });
          values.push(
            { labels: { operation, outcome, le: '+Inf' }, value: cell.count, metricName: `${duration.name}_bucket` },
            { labels: { operation, outcome }, value: cell.sum, metricName: `${duration.name}_sum` },
            { labels: { operation, outcome }, value: cell.count, metricName: `${duration.name}_count` },
          );
        }
        return { ...duration, values };
      },
    };
    // Structurally what prom-client's registry reads from a metric: name, help, type and get().
    this.registry.registerMetric(requests as unknown as Metric);
    this.registry.registerMetric(duration as unknown as Metric);

    this.#authFailures = new Counter({
      name: 'tenantgate_auth_failures_total',
      help: 'Requests refused by authentication: missing key, invalid key, or rate limited address',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    for (const reason of ['missing', 'invalid', 'rate_limited'] as const) this.#authFailures.inc({ reason }, 0);
    this.#storeErrors = new Counter({
      name: 'tenantgate_store_errors_total',
      help: `Store failures that reached a request, by kind (${STORE_ERROR_KINDS.join(', ')})`,
      labelNames: ['kind'],
      registers: [this.registry],
    });
    for (const kind of STORE_ERROR_KINDS) this.#storeErrors.inc({ kind }, 0);
    // Metering and limits: totals and reasons only, never an org (per-org figures are in GraphQL).
    this.#runUnits = new Counter({
      name: 'tenantgate_run_units_recorded_total',
      help: 'Run units recorded (repeats of an idempotency key and refused reports not counted)',
      registers: [this.registry],
    });
    this.#runUnitReports = new Counter({
      name: 'tenantgate_run_unit_reports_total',
      help: 'recordRunUnits reports by result: recorded, repeat, or quota_exceeded (refused by the run-unit quota)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    for (const result of RUN_UNIT_RESULTS) this.#runUnitReports.inc({ result }, 0);
    this.#rateLimitRefusals = new Counter({
      name: 'tenantgate_rate_limit_refusals_total',
      help: "Requests refused with 429 by an org's limits, by limit: requestsPerMinute (the org's rate) or concurrency (its requests in flight)",
      labelNames: ['limit'],
      registers: [this.registry],
    });
    for (const limit of ['requestsPerMinute', 'concurrency', 'subscriptions'] as const) this.#rateLimitRefusals.inc({ limit }, 0);
    // The audit log (issue 15): by action, a closed list; never an org.
    this.#auditRecords = new Counter({
      name: 'tenantgate_audit_records_total',
      help: 'Audit records this process wrote (committed with their change), by action',
      labelNames: ['action'],
      registers: [this.registry],
    });
    this.#auditVerifyFailures = new Counter({
      name: 'tenantgate_audit_verify_failures_total',
      help: "Orgs whose audit chain a verification in this process found broken (edited, removed or reordered records)",
      registers: [this.registry],
    });
    this.#subscriptionEvents = new Counter({
      name: 'tenantgate_subscription_events_total',
      help: 'Events handed to subscription streams, by kind (installed, changed, health, uninstalled, resync)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    const cacheResults = this.#cacheResults;
    new Counter({
      name: 'tenantgate_response_cache_total',
      help: 'Cacheable queries by result: hit (answered from the response cache) or miss (executed)',
      labelNames: ['result'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const result of ['hit', 'miss'] as const) this.inc({ result }, cacheResults[result]);
      },
    });
    const executions = this.#executions;
    new Counter({
      name: 'tenantgate_graphql_executions_total',
      help: 'Queries and mutations executed, by engine: compiled (graphql-jit) or interpreted (graphql-js)',
      labelNames: ['engine'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const engine of ['compiled', 'interpreted'] as const) this.inc({ engine }, executions[engine]);
      },
    });
  }

  /** `operation` and `outcome` must come from bounded sets (see observability.ts). */
  observeRequest(operation: string, outcome: string, seconds: number): void {
    let byOutcome = this.#cells.get(operation);
    if (byOutcome === undefined) this.#cells.set(operation, (byOutcome = new Map()));
    let cell = byOutcome.get(outcome);
    if (cell === undefined) byOutcome.set(outcome, (cell = { count: 0, sum: 0, buckets: new Float64Array(BOUNDS.length) }));
    cell.count += 1;
    cell.sum += seconds;
    for (let i = 0; i < BOUNDS.length; i++) {
      if (seconds <= BOUNDS[i]!) {
        cell.buckets[i]! += 1;
        break;
      }
    }
  }

  authFailure(reason: AuthFailureReason): void {
    this.#authFailures.inc({ reason });
  }

  storeError(kind: StoreErrorKind): void {
    this.#storeErrors.inc({ kind });
  }

  /** One recordRunUnits report: recorded (with its units), a repeat, or refused by the quota. */
  runUnitReport(result: RunUnitResult, units: number): void {
    this.#runUnitReports.inc({ result });
    if (result === 'recorded') this.#runUnits.inc(units);
  }

  auditRecord(action: AuditAction): void {
    this.#auditRecords.inc({ action });
  }

  auditVerifyFailure(): void {
    this.#auditVerifyFailures.inc();
  }

  rateLimitRefusal(limit: 'requestsPerMinute' | 'concurrency' | 'subscriptions'): void {
    this.#rateLimitRefusals.inc({ limit });
  }

  responseCache(hit: boolean): void {
    this.#cacheResults[hit ? 'hit' : 'miss'] += 1;
  }

  /** One query or mutation executed, by the engine that ran it (subscriptions are not counted). */
  execution(engine: 'compiled' | 'interpreted'): void {
    this.#executions[engine] += 1;
  }

  /** Reports the response cache's size on every scrape. */
  /** tenantgate_subscription_events_total: events handed to subscription streams, by kind (no label per org). */
  subscriptionEvent(kind: 'installed' | 'changed' | 'health' | 'uninstalled' | 'resync'): void {
    this.#subscriptionEvents.inc({ kind });
  }

  /** tenantgate_subscriptions_open: subscription streams open in this process (no label per org). */
  watchSubscriptions(open: () => number): void {
    new Gauge({
      name: 'tenantgate_subscriptions_open',
      help: 'Subscription streams (moduleEvents, moduleHealthEvents) open in this process',
      registers: [this.registry],
      collect() {
        this.set(open());
      },
    });
  }

  watchResponseCache(size: () => { bytes: number; entries: number }): void {
    const gauges = [
      ['bytes', 'Memory held by the response cache (estimated: answers, their keys and a fixed cost per entry)'],
      ['entries', 'Answers held by the response cache'],
    ] as const;
    for (const [field, help] of gauges) {
      new Gauge({
        name: `tenantgate_response_cache_${field}`,
        help,
        registers: [this.registry],
        collect() {
          this.set(size()[field]);
        },
      });
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    // Process metrics (memory, CPU, event-loop lag) start with the first scrape, so that an app
    // nobody scrapes (tests, the CLI) runs no monitors.
    if (!this.#processMetrics) {
      this.#processMetrics = true;
      collectDefaultMetrics({ register: this.registry, prefix: 'tenantgate_' });
    }
    return this.registry.metrics();
  }
}
