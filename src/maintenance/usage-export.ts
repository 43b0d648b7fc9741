import type { RunUnitEvent, Store } from '../store/types.ts';

// `tenantgate usage export` (issue 14, item 2): an org's run-unit events for billing, paged
// through the org-bound store so that an export of any size holds one page in memory.

export const EXPORT_FORMATS = ['ndjson', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** Events read per page. */
export const EXPORT_PAGE_SIZE = 500;

/** The exported fields, in order: the CSV header and each NDJSON object's keys. */
const FIELDS = ['id', 'idempotencyKey', 'units', 'moduleId', 'occurredAt', 'recordedAt', 'keyId'] as const;

// A date (midnight UTC) or a date and time with seconds optional, a fraction optional, and a zone
// required: a time without one would mean the machine's zone, which a billing period must not.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** An ISO date or date-time as the store's ISO UTC text, or undefined when it is not one (or names no real day or time). */
export function parseExportTime(text: string): string | undefined {
  const m = ISO.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  const date = new Date(m[4] === undefined ? `${text}T00:00:00Z` : text);
  if (Number.isNaN(date.getTime())) return undefined;
  // Date accepts 2026-02-30 (as March 2) and 24:00; the fields must be a real calendar day and time.
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (day.getUTCFullYear() !== Number(y) || day.getUTCMonth() !== Number(mo) - 1 || day.getUTCDate() !== Number(d)) return undefined;
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59)) return undefined;
  return date.toISOString();
}

/** One CSV field: a text a spreadsheet would run as a formula gets a leading ', and a field with a comma, quote or line break is quoted. */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function line(event: RunUnitEvent, format: ExportFormat): string {
  if (format === 'csv') return `${FIELDS.map((f) => csvField(event[f])).join(',')}\r\n`;
  const row: Record<string, unknown> = {};
  for (const f of FIELDS) row[f] = event[f];
  return `${JSON.stringify(row)}\n`;
}

export interface ExportOptions {
  orgId: string;
  /** ISO UTC: occurredAt >= from */
  from: string;
  /** ISO UTC: occurredAt < to */
  to: string;
  format: ExportFormat;
  pageSize?: number;
}

/** Writes the events to `out`, waiting for it to drain when it asks to; returns how many were written. */
export async function exportRunUnits(store: Store, options: ExportOptions, out: NodeJS.WritableStream): Promise<number> {
  const usage = store.forOrg(options.orgId).usage;
  const limit = options.pageSize ?? EXPORT_PAGE_SIZE;
  const write = (text: string) =>
    out.write(text) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve()));
  if (options.format === 'csv') await write(`${FIELDS.join(',')}\r\n`);
  let written = 0;
  let after: { occurredAt: string; id: string } | undefined;
  for (;;) {
    const page = await usage.events({ after, since: options.from, until: options.to, limit });
    for (const event of page) await write(line(event, options.format));
    written += page.length;
    if (page.length < limit) return written;
    const last = page[page.length - 1]!;
    after = { occurredAt: last.occurredAt, id: last.id };
  }
}
