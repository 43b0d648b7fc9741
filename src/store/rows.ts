import type { AuditAction, AuditActor, AuditRecord, OrgKeyRow } from './types.ts';

// Rows of the issue 15 tables as both dialects read them (snake_case columns, the same in SQLite
// and PostgreSQL), and their mapping to the store's row types: defined once for both.

export const AUDIT_COLUMNS =
  '"org_id", "seq", "id", "at", "action", "actor_key_id", "actor_key_prefix", "actor_via", "target_id", "request_id", "client_address", "outcome", "prev_hash", "hash"';

export type AuditDbRow = {
  org_id: string;
  /** A bigint on PostgreSQL (node-postgres may hand it over as text). */
  seq: number | string;
  id: string;
  at: string;
  action: AuditAction;
  actor_key_id: string | null;
  actor_key_prefix: string | null;
  actor_via: AuditActor['via'];
  target_id: string | null;
  request_id: string | null;
  client_address: string | null;
  outcome: AuditRecord['outcome'];
  prev_hash: string;
  hash: string;
};

export const auditRecordOf = (r: AuditDbRow): AuditRecord => ({
  orgId: r.org_id,
  seq: Number(r.seq),
  id: r.id,
  at: r.at,
  action: r.action,
  actorKeyId: r.actor_key_id,
  actorKeyPrefix: r.actor_key_prefix,
  actorVia: r.actor_via,
  targetId: r.target_id,
  requestId: r.request_id,
  clientAddress: r.client_address,
  outcome: r.outcome,
  prevHash: r.prev_hash,
  hash: r.hash,
});

export const ORG_KEY_COLUMNS = '"org_id", "key_id", "wrapped", "iv", "tag", "master_key_id", "created_at"';

export type OrgKeyDbRow = { org_id: string; key_id: string; wrapped: Buffer; iv: Buffer; tag: Buffer; master_key_id: string; created_at: string };

export const orgKeyRowOf = (r: OrgKeyDbRow): OrgKeyRow => ({
  orgId: r.org_id,
  keyId: r.key_id,
  wrapped: r.wrapped,
  iv: r.iv,
  tag: r.tag,
  masterKeyId: r.master_key_id,
  createdAt: r.created_at,
});
