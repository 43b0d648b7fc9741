import { auditRecorded, checkpointTarget, nextRecord, type AuditEntry } from '../audit-chain.ts';
import { StoreError } from '../errors.ts';
import type { AuditAction, AuditActor, AuditQuery, AuditRecord, OrgStore } from '../types.ts';
import { AUDIT_COLUMNS, auditRecordOf, type AuditDbRow } from '../rows.ts';
import type { SqliteDatabase } from './connection.ts';
import { settle, toStoreError } from './errors.ts';


/**
 * The SQLite audit log (issue 15). `append` runs inside the write's own transaction (BEGIN
 * IMMEDIATE: the write lock is held from the start, so the head read here is the latest in
 * every process on the file, and the chain cannot fork); `transaction` is that transaction, and
 * counts the records once it has committed.
 */
export function createSqliteAudit(sqlite: SqliteDatabase, durable: <T>(work: () => T) => Promise<T>) {
  // Prepared on first use: a store opened on a file migrated before the audit tables is refused by the schema check first.
  let statements: ReturnType<typeof prepare> | undefined;
  const prepare = () => ({
    head: sqlite.prepare<[string], { seq: number; hash: string }>('SELECT "seq", "hash" FROM "audit_heads" WHERE "org_id" = ?'),
    insert: sqlite.prepare(`INSERT INTO "audit_log" (${AUDIT_COLUMNS}) VALUES (@orgId, @seq, @id, @at, @action, @actorKeyId, @actorKeyPrefix, @actorVia, @targetId, @requestId, @clientAddress, @outcome, @prevHash, @hash)`),
    setHead: sqlite.prepare(
      'INSERT INTO "audit_heads" ("org_id", "seq", "hash") VALUES (?, ?, ?) ON CONFLICT ("org_id") DO UPDATE SET "seq" = excluded."seq", "hash" = excluded."hash"',
    ),
  });
  const st = () => (statements ??= prepare());

  let pending: AuditAction[] = [];
  const run = sqlite.transaction((work: () => unknown) => work());

  /** Appends one record to the org's chain; call inside `transaction`. A failure is the store being unavailable: the write is not made. */
  const append = (orgId: string, actor: AuditActor, entry: AuditEntry): AuditRecord => {
    try {
      const s = st();
      const head = s.head.get(orgId) ?? { seq: 0, hash: '0'.repeat(64) };
      const r = nextRecord(orgId, head, actor, entry);
      s.insert.run(r);
      s.setHead.run(orgId, r.seq, r.hash);
      pending.push(r.action);
      return r;
    } catch (error) {
      const mapped = toStoreError(error);
      throw mapped instanceof StoreError && mapped.retryable ? mapped : new StoreError('unavailable', 'audit', error);
    }
  };

  /** Runs `work` in one BEGIN IMMEDIATE transaction (a savepoint inside one already open). */
  const transaction = <T>(work: () => T): T => {
    const outer = !sqlite.inTransaction;
    try {
      const value = run.immediate(work) as T;
      if (outer) {
        const done = pending;
        pending = [];
        for (const action of done) auditRecorded(action);
      }
      return value;
    } catch (error) {
      if (outer) pending = [];
      throw error;
    }
  };

  const forOrg = (orgId: string): OrgStore['audit'] => ({
    page: (q: AuditQuery) =>
      settle(() => {
        const where = ['"org_id" = ?'];
        const values: unknown[] = [orgId];
        if (q.beforeSeq !== undefined) {
          where.push('"seq" < ?');
          values.push(q.beforeSeq);
        }
        if (q.actions !== undefined) {
          where.push(`"action" IN (${q.actions.map(() => '?').join(', ') || 'NULL'})`);
          values.push(...q.actions);
        }
        if (q.since !== undefined) {
          where.push('"at" >= ?');
          values.push(q.since);
        }
        if (q.until !== undefined) {
          where.push('"at" < ?');
          values.push(q.until);
        }
        if (q.actorKeyId !== undefined) {
          where.push('"actor_key_id" = ?');
          values.push(q.actorKeyId);
        }
        values.push(q.limit);
        const rows = sqlite.prepare(`SELECT ${AUDIT_COLUMNS} FROM "audit_log" WHERE ${where.join(' AND ')} ORDER BY "seq" DESC LIMIT ?`).all(...values) as AuditDbRow[];
        return rows.map(auditRecordOf);
      }),
    chain: (afterSeq, limit) =>
      settle(() =>
        (sqlite.prepare(`SELECT ${AUDIT_COLUMNS} FROM "audit_log" WHERE "org_id" = ? AND "seq" > ? ORDER BY "seq" LIMIT ?`).all(orgId, afterSeq, limit) as AuditDbRow[]).map(auditRecordOf),
      ),
    head: () => settle(() => st().head.get(orgId)),
    prune: (before, actor) =>
      durable(() =>
        transaction(() => {
          const last = sqlite
            .prepare<[string, string], { seq: number; hash: string }>(
              'SELECT "seq", "hash" FROM "audit_log" WHERE "org_id" = ? AND "at" < ? ORDER BY "seq" DESC LIMIT 1',
            )
            .get(orgId, before);
          if (!last) return 0;
          append(orgId, actor, { action: 'AUDIT_CHECKPOINT', targetId: checkpointTarget(last.seq, last.hash) });
          return sqlite.prepare('DELETE FROM "audit_log" WHERE "org_id" = ? AND "seq" <= ?').run(orgId, last.seq).changes;
        }),
      ),
  });

  return { append, transaction, forOrg };
}
export type SqliteAudit = ReturnType<typeof createSqliteAudit>;
