import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { badInput, notFound, quotaExceeded } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { AuditActor, OrgQuotaRow, OrgStore, RunUnitEvent, UsageBucket, UsageTotals } from '../store/types.ts';
import type { Quotas } from '../usage/quotas.ts';
import { hasNul, lookupable, parseInput, text } from './validate.ts';

/** The most run units one report may carry (GraphQL's Int holds it). */
export const MAX_RUN_UNITS = 1_000_000_000;
export const MAX_IDEMPOTENCY_KEY = 200;
/** How far back a report's occurredAt may be (Stripe's meter events accept 35 days). */
export const MAX_BACKDATE_DAYS = 35;
/** How far ahead of this clock an occurredAt may be (the runner's clock may run a little fast). */
export const CLOCK_SKEW_MS = 60_000;
export const MAX_EVENT_PAGE = 1000;
/** A series covers at most this many buckets (31 days of hours, or a bit over a year of days). */
export const MAX_SERIES_BUCKETS = 744;
const MAX_SERIES_DAYS = 400;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** What metering needs beside the store: quotas for the check, metrics and the log for refusals. */
export interface Metering {
  quotas: Quotas;
  metrics: Metrics;
  logger: Logger;
}

const recordSchema = z.object({
  units: z
    .number()
    .int('units must be a whole number')
    .min(1, 'units must be at least 1')
    .max(MAX_RUN_UNITS, `units must be at most ${MAX_RUN_UNITS}`),
  idempotencyKey: text('idempotencyKey')
    .min(1, 'idempotencyKey must not be empty')
    .max(MAX_IDEMPOTENCY_KEY, `idempotencyKey must be at most ${MAX_IDEMPOTENCY_KEY} characters`)
    .regex(/^[\x21-\x7e]+$/, 'idempotencyKey must be printable ASCII without spaces'),
  moduleId: z.string().nullish(),
  occurredAt: z.date().nullish(),
});

export type RecordRunUnitsInput = z.input<typeof recordSchema>;

/** `YYYY-MM` in UTC. */
const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** The UTC calendar month `period` (`YYYY-MM`) names, or the one holding `now`: its start and end (exclusive). */
export function monthOf(period: string | null | undefined, now = new Date()): { start: Date; end: Date } {
  let year: number;
  let month: number;
  if (period == null) {
    year = now.getUTCFullYear();
    month = now.getUTCMonth();
  } else {
    const match = PERIOD.exec(period);
    if (!match) throw badInput('period must be a UTC calendar month as YYYY-MM, e.g. 2026-12', 'period');
    year = Number(match[1]);
    month = Number(match[2]) - 1;
  }
  return { start: new Date(Date.UTC(year, month, 1)), end: new Date(Date.UTC(year, month + 1, 1)) };
}

/** What `usage` answers: the month's use against the org's quota. */
export interface UsageReport extends UsageTotals {
  periodStart: string;
  periodEnd: string;
  /** The run-unit quota that applies (the org's or the default), null when unlimited. */
  quota: number | null;
  remaining: number | null;
  /** The share of the quota from which nearQuota is true (0-1). */
  warnAt: number;
  nearQuota: boolean;
  requestsPerMinute: number | null;
  burst: number | null;
}

export function newEventId(): string {
  // 120 random bits in base32 (lower case, no padding): 24 characters.
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = randomBytes(15);
  let out = 'ru_';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

function encodeCursor(event: RunUnitEvent): string {
  return Buffer.from(`u:${event.occurredAt}|${event.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { occurredAt: string; id: string } {
  const raw = Buffer.from(cursor, 'base64url').toString('utf8');
  const bar = raw.indexOf('|');
  // No cursor this API returns holds U+0000 (PostgreSQL text cannot).
  if (!raw.startsWith('u:') || bar < 0 || hasNul(raw)) throw badInput('after is not a cursor this API returned', 'after');
  return { occurredAt: raw.slice(2, bar), id: raw.slice(bar + 1) };
}

/** The events of one page and whether more follow. */
export interface EventPage {
  events: RunUnitEvent[];
  hasNextPage: boolean;
}

/** Metering of one org: what tenant fields (under usage:read/usage:write) and the admin's per-org fields call. */
export function usageForOrg(org: OrgStore, metering: Metering) {
  const { quotas, metrics, logger } = metering;

  return {
    async record(input: RecordRunUnitsInput, keyId: string | null): Promise<{ event: RunUnitEvent; repeat: boolean }> {
      const parsed = parseInput(recordSchema, input);
      const now = new Date();
      const occurred = parsed.occurredAt ?? now;
      if (Number.isNaN(occurred.getTime())) throw badInput('occurredAt is not a valid time', 'occurredAt');
      if (occurred.getTime() > now.getTime() + CLOCK_SKEW_MS) throw badInput('occurredAt must not be in the future', 'occurredAt');
      if (occurred.getTime() < now.getTime() - MAX_BACKDATE_DAYS * DAY_MS) {
        throw badInput(`occurredAt must be at most ${MAX_BACKDATE_DAYS} days in the past`, 'occurredAt');
      }
      const moduleId = parsed.moduleId ?? null;
      if (moduleId !== null && !lookupable(moduleId, 'moduleId')) throw notFound('Module', moduleId);
      // Read from the store, not the gates' cache: a quota that cannot be read refuses the report
      // (SERVICE_UNAVAILABLE) rather than recording it past the limit.
      const quota = await quotas.strict(org.orgId);
      const result = await org.usage.record(
        {
          id: newEventId(),
          idempotencyKey: parsed.idempotencyKey,
          units: parsed.units,
          moduleId,
          occurredAt: occurred.toISOString(),
          recordedAt: now.toISOString(),
          keyId,
        },
        quota.runUnitsPerMonth,
      );
      switch (result.kind) {
        case 'recorded':
          metrics.runUnitReport('recorded', result.event.units);
          return { event: result.event, repeat: false };
        case 'repeat':
          metrics.runUnitReport('repeat', 0);
          return { event: result.event, repeat: true };
        case 'no-module':
          throw notFound('Module', moduleId ?? '');
        case 'over-quota': {
          metrics.runUnitReport('quota_exceeded', 0);
          const resetsAt = monthOf(occurred.toISOString().slice(0, 7)).end.toISOString();
          logger.info('run units refused: quota', { orgId: org.orgId, limit: 'runUnitsPerMonth', quota: result.limit, used: result.used, units: parsed.units });
          throw quotaExceeded(result.limit, result.used, resetsAt);
        }
      }
    },

    async usage(period: string | null | undefined): Promise<UsageReport> {
      const { start, end } = monthOf(period);
      const [totals, quota] = await Promise.all([org.usage.month(start.toISOString()), quotas.get(org.orgId)]);
      const limit = quota.runUnitsPerMonth;
      const warnAt = quotas.defaults.warnPercent / 100;
      return {
        ...totals,
        periodStart: start.toISOString(),
        periodEnd: end.toISOString(),
        quota: limit,
        remaining: limit === null ? null : Math.max(0, limit - totals.runUnits),
        warnAt,
        nearQuota: limit !== null && totals.runUnits >= limit * warnAt,
        requestsPerMinute: quota.requestsPerMinute,
        burst: quota.burst,
      };
    },

    /** Every bucket from `from` to `to`, the empty ones as zeros, so a chart needs no gap filling. */
    async series(from: Date, to: Date, granularity: 'hour' | 'day'): Promise<UsageBucket[]> {
      const step = granularity === 'hour' ? HOUR_MS : DAY_MS;
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) throw badInput('from and to must be valid times');
      const start = Math.floor(from.getTime() / step) * step;
      const end = Math.ceil(to.getTime() / step) * step;
      if (end <= start) throw badInput('to must be after from', 'to');
      const buckets = (end - start) / step;
      const max = granularity === 'hour' ? MAX_SERIES_BUCKETS : MAX_SERIES_DAYS;
      if (buckets > max) throw badInput(`a series covers at most ${max} ${granularity === 'hour' ? 'hours' : 'days'}`, 'to');
      const found = await org.usage.series(new Date(start).toISOString(), new Date(end).toISOString(), granularity);
      const byStart = new Map(found.map((b) => [b.start, b]));
      const series: UsageBucket[] = [];
      for (let at = start; at < end; at += step) {
        const key = new Date(at).toISOString();
        series.push(byStart.get(key) ?? { start: key, runUnits: 0, requests: 0 });
      }
      return series;
    },

    async events(opts: { first?: number | null; after?: string | null; since?: Date | null }): Promise<EventPage> {
      const first = opts.first ?? 100;
      if (!Number.isInteger(first) || first < 0 || first > MAX_EVENT_PAGE) throw badInput(`first must be from 0 to ${MAX_EVENT_PAGE}`, 'first');
      if (opts.since != null && Number.isNaN(opts.since.getTime())) throw badInput('since is not a valid time', 'since');
      const after = opts.after ? decodeCursor(opts.after) : undefined;
      const rows = await org.usage.events({ after, since: opts.since?.toISOString(), limit: first + 1 });
      return { events: rows.slice(0, first), hasNextPage: rows.length > first };
    },

    cursorOf: encodeCursor,
  };
}

export type UsageRepo = ReturnType<typeof usageForOrg>;

const quotaNumber = (name: string, max: number) =>
  z.number().int(`${name} must be a whole number`).min(1, `${name} must be at least 1 (null: the default)`).max(max, `${name} must be at most ${max}`).nullish();

const quotaSchema = z.object({
  runUnitsPerMonth: quotaNumber('runUnitsPerMonth', Number.MAX_SAFE_INTEGER),
  requestsPerMinute: quotaNumber('requestsPerMinute', 100_000_000),
  burst: quotaNumber('burst', 100_000_000),
});

export type OrgQuotaInput = z.input<typeof quotaSchema>;

/** The admin's quota setting for one org (through that org's store). */
export async function setQuota(org: OrgStore, input: OrgQuotaInput, actor: AuditActor): Promise<OrgQuotaRow> {
  const parsed = parseInput(quotaSchema, input);
  if (parsed.burst != null && parsed.requestsPerMinute != null && parsed.burst > parsed.requestsPerMinute * 1440) {
    throw badInput('burst may be at most a day of requestsPerMinute (requestsPerMinute * 1440)', 'burst');
  }
  return org.usage.setQuota({
    runUnitsPerMonth: parsed.runUnitsPerMonth ?? null,
    requestsPerMinute: parsed.requestsPerMinute ?? null,
    burst: parsed.burst ?? null,
    updatedAt: new Date().toISOString(),
  }, actor);
}
