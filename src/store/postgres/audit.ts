import type pg from 'pg';
import { checkpointTarget, GENESIS_HASH, nextRecord, type AuditEntry } from '../audit-chain.ts';
import { StoreError } from '../errors.ts';
import type { AuditAction, AuditActor, AuditQuery, AuditRecord } from '../types.ts';
import { AUDIT_COLUMNS, auditRecordOf, type AuditDbRow } from '../rows.ts';
import { toStoreError } from './errors.ts';


/**
 * Takes the next seq of the org's chain: the upsert locks the head row, so concurrent appends of
 * one org (any process, any pool) wait for each other's commit and each sees the latest head;
 * returns the new seq and the previous hash (GENESIS for the first record).
 */
const TAKE_HEAD = `INSERT INTO "audit_heads" AS h ("org_id", "seq", "hash") VALUES ($1, 1, '${GENESIS_HASH}')
  ON CONFLICT ("org_id") DO UPDATE SET "seq" = h."seq" + 1 RETURNING "seq", "hash"`;
const APPEND = `WITH ins AS (
    INSERT INTO "audit_log" (${AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
  ) UPDATE "audit_heads" SET "hash" = $14 WHERE "org_id" = $1`;

/**
 * Appends one record to `orgId`'s chain on the connection of an open transaction whose org is
 * `orgId` (the wall admits nothing else). A failure is the store being unavailable (unless it is
 * already a retryable failure): the caller's transaction rolls back and its change is not made.
 */
export async function appendAudit(c: pg.PoolClient, orgId: string, actor: AuditActor, entry: AuditEntry): Promise<AuditRecord> {
  try {
    const { rows } = await c.query<{ seq: number; hash: string }>({ name: 'tg_audit_head', text: TAKE_HEAD, values: [orgId] });
    const head = rows[0]!;
    const r = nextRecord(orgId, { seq: Number(head.seq) - 1, hash: head.hash }, actor, entry);
    await c.query({
      name: 'tg_audit_append',
      text: APPEND,
      values: [r.orgId, r.seq, r.id, r.at, r.action, r.actorKeyId, r.actorKeyPrefix, r.actorVia, r.targetId, r.requestId, r.clientAddress, r.outcome, r.prevHash, r.hash],
    });
    return r;
  } catch (error) {
    const mapped = toStoreError(error);
    throw mapped instanceof StoreError && mapped.retryable ? mapped : new StoreError('unavailable', 'audit', error);
  }
}

/** A page of the org's records, newest first (see OrgStore.audit.page). */
export async function auditPage(c: pg.PoolClient, orgId: string, q: AuditQuery): Promise<AuditRecord[]> {
  const where = ['"org_id" = $1'];
  const values: unknown[] = [orgId, q.limit];
  const add = (clause: (n: string) => string, value: unknown) => {
    values.push(value);
    where.push(clause(`$${values.length}`));
  };
  if (q.beforeSeq !== undefined) add((n) => `"seq" < ${n}`, q.beforeSeq);
  if (q.actions !== undefined) add((n) => `"action" = ANY(${n}::text[])`, q.actions);
  if (q.since !== undefined) add((n) => `"at" >= ${n}`, q.since);
  if (q.until !== undefined) add((n) => `"at" < ${n}`, q.until);
  if (q.actorKeyId !== undefined) add((n) => `"actor_key_id" = ${n}`, q.actorKeyId);
  const { rows } = await c.query<AuditDbRow>({
    text: `SELECT ${AUDIT_COLUMNS} FROM "audit_log" WHERE ${where.join(' AND ')} ORDER BY "seq" DESC LIMIT $2`,
    values,
  });
  return rows.map(auditRecordOf);
}

export async function auditChain(c: pg.PoolClient, orgId: string, afterSeq: number, limit: number): Promise<AuditRecord[]> {
  const { rows } = await c.query<AuditDbRow>({
    name: 'tg_audit_chain',
    text: `SELECT ${AUDIT_COLUMNS} FROM "audit_log" WHERE "org_id" = $1 AND "seq" > $2 ORDER BY "seq" LIMIT $3`,
    values: [orgId, afterSeq, limit],
  });
  return rows.map(auditRecordOf);
}

export async function auditHead(c: pg.PoolClient, orgId: string): Promise<{ seq: number; hash: string } | undefined> {
  const { rows } = await c.query<{ seq: number; hash: string }>({
    name: 'tg_audit_head_get',
    text: 'SELECT "seq", "hash" FROM "audit_heads" WHERE "org_id" = $1',
    values: [orgId],
  });
  return rows[0] === undefined ? undefined : { seq: Number(rows[0].seq), hash: rows[0].hash };
}

/** Retention, in the org's transaction: the checkpoint first, then the definer function deletes what it vouches for (drizzle/pg/0014). */
export async function auditPrune(c: pg.PoolClient, orgId: string, before: string, actor: AuditActor, recorded: (r: AuditRecord) => void): Promise<number> {
  const { rows } = await c.query<{ seq: number; hash: string }>({
    text: 'SELECT "seq", "hash" FROM "audit_log" WHERE "org_id" = $1 AND "at" < $2 ORDER BY "seq" DESC LIMIT 1',
    values: [orgId, before],
  });
  const last = rows[0];
  if (last === undefined) return 0;
  recorded(await appendAudit(c, orgId, actor, { action: 'AUDIT_CHECKPOINT', targetId: checkpointTarget(Number(last.seq), last.hash) }));
  const pruned = await c.query<{ n: number }>({ text: 'SELECT public.tenantgate_audit_prune($1) AS n', values: [last.seq] });
  return Number(pruned.rows[0]?.n ?? 0);
}
