import type { Writable } from 'node:stream';
import { auditVerifyFailed, chainVerifier, type ChainFailure } from '../store/audit-chain.ts';
import type { Logger } from '../logger.ts';
import { auditForOrg, AUDIT_EXPORT_PAGE } from '../repos/audit.ts';
import type { AuditActor, AuditRecord, Store } from '../store/types.ts';

export interface VerifyResult {
  /** Records checked in all the orgs verified. */
  checked: number;
  orgs: number;
  /** The first record found wrong in each org whose chain is broken. */
  failures: ChainFailure[];
}

/**
 * `tenantgate audit verify`: reads each org's chain in seq order, page by page, recomputing every
 * hash (src/store/audit-chain.ts), and compares its end with the org's audit head. A failure is
 * logged with the org, seq, record id and what is wrong, never a record's content.
 */
export async function verifyAudit(store: Store, opts: { orgId?: string | undefined; logger: Logger }): Promise<VerifyResult> {
  const orgIds = opts.orgId !== undefined ? [opts.orgId] : (await store.system.orgs.list()).map((o) => o.id);
  const result: VerifyResult = { checked: 0, orgs: 0, failures: [] };
  for (const orgId of orgIds) {
    const org = store.forOrg(orgId);
    const verifier = chainVerifier(orgId);
    let after = 0;
    for (;;) {
      const rows = await org.audit.chain(after, AUDIT_EXPORT_PAGE);
      for (const r of rows) verifier.push(r);
      if (rows.length < AUDIT_EXPORT_PAGE) break;
      after = rows.at(-1)!.seq;
    }
    const outcome = verifier.end(await org.audit.head());
    result.orgs++;
    result.checked += outcome.checked;
    if (!outcome.ok) {
      result.failures.push(outcome.failure);
      auditVerifyFailed(outcome.failure);
      opts.logger.error('audit chain broken', { orgId, seq: outcome.failure.seq, recordId: outcome.failure.id, problem: outcome.failure.problem });
    }
  }
  return result;
}

/** The fields of an exported record: everything but the chain's own hashes (verify checks those). */
export function exportedRecord(r: AuditRecord): Record<string, unknown> {
  return {
    id: r.id,
    seq: r.seq,
    at: r.at,
    orgId: r.orgId,
    action: r.action,
    outcome: r.outcome,
    actorKeyId: r.actorKeyId,
    actorKeyPrefix: r.actorKeyPrefix,
    actorVia: r.actorVia,
    targetId: r.targetId,
    requestId: r.requestId,
    clientAddress: r.clientAddress,
    hash: r.hash,
  };
}

/** `tenantgate audit export`: the org's records with at >= since, oldest first, one JSON object a line; waits for the stream to drain. */
export async function exportAudit(store: Store, orgId: string, since: string | undefined, out: Writable): Promise<number> {
  let n = 0;
  for await (const r of auditForOrg(store.forOrg(orgId)).export(since)) {
    n++;
    if (!out.write(`${JSON.stringify(exportedRecord(r))}\n`)) await new Promise((resolve) => out.once('drain', resolve));
  }
  return n;
}

/** `tenantgate audit prune`: each org's records before `before` deleted, an AUDIT_CHECKPOINT keeping the rest verifiable. */
export async function pruneAudit(store: Store, before: string, actor: AuditActor, orgId?: string): Promise<Array<{ orgId: string; pruned: number }>> {
  const orgIds = orgId !== undefined ? [orgId] : (await store.system.orgs.list()).map((o) => o.id);
  const out: Array<{ orgId: string; pruned: number }> = [];
  for (const id of orgIds) out.push({ orgId: id, pruned: await store.forOrg(id).audit.prune(before, actor) });
  return out;
}
