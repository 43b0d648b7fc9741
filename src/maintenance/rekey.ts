import { OrgKeyring } from '../crypto/data-keys.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';

const pause = () => new Promise((resolve) => setTimeout(resolve, 10));
/** Rounds in a row in which no credential could be moved before the move gives up (about 1 s). */
const MAX_STALLED_ROUNDS = 100;

/**
 * Master-key rotation: re-wraps every org's data key not wrapped under the current master key,
 * one org_keys row per org (the credentials, sealed under the data keys, are not touched). Rows
 * are re-wrapped one at a time with a compare-and-swap on the IV, so gateways keep reading (they
 * hold both master keys during the rotation: TENANTGATE_MASTER_KEY_PREVIOUS). Credentials still
 * sealed directly under a master key are moved to their org's data key first (moveToDataKeys).
 */
export async function rekeyCredentials(
  store: Store,
  secretBox: SecretBox,
  { logger, batchSize = 200 }: { logger: Logger; batchSize?: number },
): Promise<{ rewrapped: number; moved: number }> {
  const { moved } = await moveToDataKeys(store, secretBox, { logger, batchSize });
  let rewrapped = 0;
  for (;;) {
    const rows = await store.system.orgKeys.notUnderMaster(secretBox.currentKeyId, batchSize);
    if (rows.length === 0) break;
    let progressed = false;
    for (const row of rows) {
      const key = secretBox.unwrapDataKey(row.orgId, row.keyId, row);
      const wrapped = secretBox.wrapDataKey(row.orgId, row.keyId, key);
      key.fill(0);
      if (await store.system.orgKeys.rewrap({ ...row, ...wrapped }, row.iv)) {
        rewrapped++;
        progressed = true;
      }
    }
    // Every row changed under us (another rotation ran at once): read again.
    if (!progressed) await pause();
  }
  logger.info('org data keys re-wrapped', { rewrapped, moved, keyId: secretBox.currentKeyId });
  return { rewrapped, moved };
}

/**
 * Moves credentials sealed directly under a master key (key id `mk_…`: every credential written
 * before per-org data keys) to their org's data key, made on first need. Run at every start
 * (openStore), idempotent and crash-safe: each credential is opened and resealed with a
 * compare-and-swap on its IV, so a row changed meanwhile keeps its new value, and its org's data
 * key is committed before any credential names it; a kill at any point leaves each credential
 * sealed either way, readable, and the next start finishes. `onStep` is a test seam (kill points).
 */
export async function moveToDataKeys(
  store: Store,
  secretBox: SecretBox,
  { logger, batchSize = 200, onStep }: { logger: Logger; batchSize?: number; onStep?: (step: string) => void },
): Promise<{ moved: number }> {
  // A keyring of its own: nothing cached here outlives the move.
  const keys = new OrgKeyring(secretBox);
  let moved = 0;
  let attempts = 0;
  let stalled = 0;
  for (;;) {
    const rows = await store.system.credentials.underMasterKey(batchSize);
    if (rows.length === 0) break;
    // The org's data key first (one at a time per org), then the batch's reseals together, so the
    // writes of a batch share their syncs (SQLite's group commit) or the pool's connections.
    const dataKeys = new Map<string, Awaited<ReturnType<OrgKeyring['forSealing']>>>();
    for (const row of rows) {
      if (!dataKeys.has(row.orgId)) dataKeys.set(row.orgId, await keys.forSealing(store.forOrg(row.orgId)));
    }
    onStep?.('data-keys-made');
    const results = await Promise.all(
      rows.map(async (row) => {
        const dataKey = dataKeys.get(row.orgId);
        if (!dataKey) return false; // its org went meanwhile, and the credential with it
        const sealed = dataKey.seal(row.moduleId, secretBox.open(row.orgId, row.moduleId, row));
        onStep?.(`credential-moving-${++attempts}`);
        const swapped = await store.system.credentials.reseal({ ...row, ...sealed }, row.iv);
        if (swapped) moved++;
        return swapped;
      }),
    );
    if (results.some(Boolean)) {
      stalled = 0;
    } else {
      // Rows replaced meanwhile are written under a data key and drop out; rows that never move
      // would hold the start forever: after a while that is a failure to report, not to wait on.
      if (++stalled >= MAX_STALLED_ROUNDS) throw new Error(`${rows.length} credential(s) could not be moved to their org's data key`);
      await pause();
    }
  }
  keys.forget(null);
  if (moved > 0) logger.info('credentials moved to per-org data keys', { moved });
  return { moved };
}
