import type { SecretBox } from '../crypto/secret-box.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';

/**
 * Re-encrypts every credential not sealed under the current master key. Rows are resealed one at
 * a time with a compare-and-swap on the IV, so gateways keep reading (they hold both keys during
 * the rotation) and a credential replaced meanwhile is not overwritten with its old value.
 */
export async function rekeyCredentials(
  store: Store,
  secretBox: SecretBox,
  { logger, batchSize = 200 }: { logger: Logger; batchSize?: number },
): Promise<{ resealed: number }> {
  let resealed = 0;
  for (;;) {
    const rows = await store.system.credentials.notUnderKey(secretBox.currentKeyId, batchSize);
    if (rows.length === 0) break;
    let progressed = false;
    for (const row of rows) {
      const plaintext = secretBox.open(row.orgId, row.moduleId, row);
      const sealed = secretBox.seal(row.orgId, row.moduleId, plaintext);
      if (await store.system.credentials.reseal({ ...row, ...sealed }, row.iv)) {
        resealed++;
        progressed = true;
      }
    }
    // Every row changed under us (concurrent writes seal under the current key): read again.
    if (!progressed) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  logger.info('credentials re-encrypted', { resealed, keyId: secretBox.currentKeyId });
  return { resealed };
}
