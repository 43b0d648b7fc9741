import { createHash, randomBytes } from 'node:crypto';
import type { AuditAction, AuditActor, AuditOutcome, AuditRecord } from './types.ts';

/**
 * The audit log's hash chain (issue 15), defined once for both dialects and the verifier.
 *
 * canonical(record) is the JSON text of the array
 *   [orgId, seq, id, at, action, actorKeyId, actorKeyPrefix, actorVia, targetId, requestId, clientAddress, outcome, prevHash]
 * (JSON.stringify: strings escaped as JSON does, seq as a decimal integer, absent values null),
 * and hash = hex(sha256(prevHash || canonical(record))), prevHash being the previous record's hash
 * in seq order (GENESIS, 64 zeros, for seq 1). Editing any field, removing a record or swapping
 * two changes a hash or breaks a link, which `verifyChain` names.
 */
export const GENESIS_HASH = '0'.repeat(64);

export type UnsealedRecord = Omit<AuditRecord, 'hash'>;

export function canonical(r: UnsealedRecord): string {
  return JSON.stringify([
    r.orgId,
    r.seq,
    r.id,
    r.at,
    r.action,
    r.actorKeyId,
    r.actorKeyPrefix,
    r.actorVia,
    r.targetId,
    r.requestId,
    r.clientAddress,
    r.outcome,
    r.prevHash,
  ]);
}

export function chainHash(r: UnsealedRecord): string {
  return createHash('sha256').update(r.prevHash).update(canonical(r)).digest('hex');
}

/** `au_` and 24 random base32 characters (120 bits). */
export function newAuditId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = 'au_';
  let bits = 0;
  let value = 0;
  for (const byte of randomBytes(15)) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

/** What a store method records: the action, what it was on, and how it ended. */
export interface AuditEntry {
  action: AuditAction;
  targetId: string | null;
  outcome?: AuditOutcome;
}

/** The next record of a chain whose head is (seq, hash): sealed with its hash. */
export function nextRecord(orgId: string, head: { seq: number; hash: string }, actor: AuditActor, entry: AuditEntry, at = new Date().toISOString()): AuditRecord {
  const unsealed: UnsealedRecord = {
    orgId,
    seq: head.seq + 1,
    id: newAuditId(),
    at,
    action: entry.action,
    actorKeyId: actor.keyId,
    actorKeyPrefix: actor.keyPrefix,
    actorVia: actor.via,
    targetId: entry.targetId,
    requestId: actor.requestId,
    clientAddress: actor.address,
    outcome: entry.outcome ?? 'success',
    prevHash: head.hash,
  };
  return { ...unsealed, hash: chainHash(unsealed) };
}

/**
 * Pruning (README "Audit and compliance"): the records through seq N are deleted and an
 * AUDIT_CHECKPOINT record appended at the head of the chain names N and the hash of record N as
 * its target, `through:<N>:<hash>`. The checkpoint is itself a link of the chain, so the vouched
 * (N, hash) cannot be changed without breaking every later link; the first record kept (N + 1)
 * must have that hash as its prevHash.
 */
export function checkpointTarget(through: number, hash: string): string {
  return `through:${through}:${hash}`;
}

export function parseCheckpointTarget(target: string | null): { through: number; hash: string } | undefined {
  const m = /^through:(\d+):([0-9a-f]{64})$/.exec(target ?? '');
  return m ? { through: Number(m[1]), hash: m[2]! } : undefined;
}

export type ChainProblem = 'edited' | 'removed' | 'reordered' | 'head';

export interface ChainFailure {
  orgId: string;
  /** The first record found wrong (for 'removed': the record after the gap; for a missing tail: the head's seq). */
  seq: number;
  id: string | null;
  problem: ChainProblem;
}

/**
 * Checks one org's records, read in seq order (ascending), page by page: feed each record to
 * `push`, then `end(head)` with the org's audit head. The first failure found is kept; the
 * records of a pruned prefix are vouched for by a checkpoint (see checkpointTarget).
 */
export function chainVerifier(orgId: string) {
  let expectedSeq: number | undefined;
  let prevHash: string | undefined;
  let first: AuditRecord | undefined;
  const checkpoints = new Map<number, string>();
  let failure: ChainFailure | undefined;
  let checked = 0;
  const fail = (r: { seq: number; id: string | null }, problem: ChainProblem) => {
    failure ??= { orgId, seq: r.seq, id: r.id, problem };
  };
  return {
    push(r: AuditRecord) {
      if (failure) return;
      checked++;
      if (r.orgId !== orgId) return fail(r, 'edited');
      if (expectedSeq === undefined) {
        first = r;
        expectedSeq = r.seq;
        prevHash = r.prevHash;
        if (r.seq === 1 && r.prevHash !== GENESIS_HASH) return fail(r, 'edited');
      }
      if (r.seq !== expectedSeq) return fail(r, r.seq > expectedSeq ? 'removed' : 'reordered');
      // A record that does not follow its predecessor was moved (rows swapped, or renumbered).
      if (r.prevHash !== prevHash) return fail(r, 'reordered');
      if (chainHash(r) !== r.hash) return fail(r, 'edited');
      if (r.action === 'AUDIT_CHECKPOINT') {
        const vouched = parseCheckpointTarget(r.targetId);
        if (vouched) checkpoints.set(vouched.through, vouched.hash);
      }
      prevHash = r.hash;
      expectedSeq = r.seq + 1;
    },
    end(head: { seq: number; hash: string } | undefined): { ok: true; checked: number } | { ok: false; checked: number; failure: ChainFailure } {
      if (!failure && first && first.seq !== 1) {
        // A pruned prefix: some checkpoint of the chain vouches for exactly where it ends.
        if (checkpoints.get(first.seq - 1) !== first.prevHash) fail(first, 'removed');
      }
      if (!failure && head) {
        const lastSeq = expectedSeq === undefined ? 0 : expectedSeq - 1;
        if (head.seq !== lastSeq || (lastSeq > 0 && head.hash !== prevHash)) fail({ seq: Math.max(head.seq, lastSeq), id: null }, 'removed');
      }
      if (!failure && !head && expectedSeq !== undefined) fail({ seq: expectedSeq - 1, id: null }, 'head');
      return failure ? { ok: false, checked, failure } : { ok: true, checked };
    },
  };
}

const recordListeners = new Set<(action: AuditAction) => void>();

/** Hears every audit record this process commits (the metric tenantgate_audit_records_total); returns the unsubscribe. */
export function onAuditRecord(listener: (action: AuditAction) => void): () => void {
  recordListeners.add(listener);
  return () => recordListeners.delete(listener);
}

const verifyFailureListeners = new Set<(failure: ChainFailure) => void>();

/** Hears every broken chain a verification in this process finds (tenantgate_audit_verify_failures_total); returns the unsubscribe. */
export function onAuditVerifyFailure(listener: (failure: ChainFailure) => void): () => void {
  verifyFailureListeners.add(listener);
  return () => verifyFailureListeners.delete(listener);
}

/** Called by the verifier (src/maintenance/audit.ts) for each org whose chain is broken. */
export function auditVerifyFailed(failure: ChainFailure): void {
  for (const listener of verifyFailureListeners) {
    try {
      listener(failure);
    } catch {
      // a metric must never fail a verification
    }
  }
}

/** Called by the dialects once a transaction holding records has committed. */
export function auditRecorded(action: AuditAction): void {
  for (const listener of recordListeners) {
    try {
      listener(action);
    } catch {
      // a metric must never fail a write
    }
  }
}
