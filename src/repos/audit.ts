import { badInput } from '../errors.ts';
import type { AuditAction, AuditRecord, OrgStore } from '../store/types.ts';
import { lookupable } from './validate.ts';

/** The actions (the API's enum AuditAction), from the store's one list. */
export { AUDIT_ACTIONS } from '../store/types.ts';

export const MAX_AUDIT_PAGE = 100;
/** What the export reads per round trip. */
export const AUDIT_EXPORT_PAGE = 500;

export interface AuditFilter {
  actions?: readonly AuditAction[] | null | undefined;
  since?: Date | null | undefined;
  until?: Date | null | undefined;
  actorKeyId?: string | null | undefined;
}

export interface AuditPage {
  rows: AuditRecord[];
  hasNextPage: boolean;
}

/** A position in the org's log, newest first: the record's seq. Another org's cursor is a position like any other, in this org's log. */
export function auditCursor(record: Pick<AuditRecord, 'seq'>): string {
  return Buffer.from(`a:${record.seq}`).toString('base64url');
}

function decodeCursor(cursor: string): number {
  const m = /^a:([1-9][0-9]{0,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const seq = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(seq)) throw badInput('after is not a cursor this API returned', 'after');
  return seq;
}

/** One org's audit log, read-only: records are written by the store with each change, never here. */
export function auditForOrg(org: OrgStore) {
  return {
    async page(opts: { first?: number | null | undefined; after?: string | null | undefined; filter?: AuditFilter | null | undefined }): Promise<AuditPage> {
      const first = opts.first ?? 20;
      if (!Number.isInteger(first) || first < 0 || first > MAX_AUDIT_PAGE) throw badInput(`first must be from 0 to ${MAX_AUDIT_PAGE}`, 'first');
      const filter = opts.filter ?? {};
      const since = filter.since ?? undefined;
      const until = filter.until ?? undefined;
      if (since && until && since.getTime() >= until.getTime()) throw badInput('filter.since must be before filter.until', 'filter.since');
      const actorKeyId = filter.actorKeyId ?? undefined;
      // A key id too long to exist matches nothing, as a missing one does.
      if (actorKeyId !== undefined && !lookupable(actorKeyId, 'filter.actorKeyId')) return { rows: [], hasNextPage: false };
      const beforeSeq = opts.after ? decodeCursor(opts.after) : undefined;
      if (filter.actions != null && filter.actions.length === 0) return { rows: [], hasNextPage: false };
      const rows = await org.audit.page({
        beforeSeq,
        actions: filter.actions ?? undefined,
        since: since?.toISOString(),
        until: until?.toISOString(),
        actorKeyId,
        limit: first + 1,
      });
      return { rows: rows.slice(0, first), hasNextPage: rows.length > first };
    },

    cursorOf: auditCursor,

    /** Records with at >= since, oldest first, page by page (the CLI's export). */
    async *export(since: string | undefined): AsyncGenerator<AuditRecord> {
      let after = 0;
      for (;;) {
        const rows = await org.audit.chain(after, AUDIT_EXPORT_PAGE);
        for (const r of rows) if (since === undefined || r.at >= since) yield r;
        if (rows.length < AUDIT_EXPORT_PAGE) return;
        after = rows.at(-1)!.seq;
      }
    },
  };
}

export type AuditRepo = ReturnType<typeof auditForOrg>;
