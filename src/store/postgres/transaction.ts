import type pg from 'pg';

/**
 * One org-bound transaction with its connection in pipeline mode (node-postgres 8.23 `pipeline`,
 * switched on for the transaction only: the pool's other users, the limiter, crossOrg and /ready,
 * made postgres-faults answer INTERNAL_SERVER_ERROR now and then in an outage when it was on for
 * the whole pool):
 * BEGIN with the org set, the work's first statements, and for a write the notification with
 * COMMIT, are written without waiting for each other's answers, so a read costs the caller one
 * round trip (it was two) and a write two (it was three).
 *
 * What stays as it was without pipelining:
 * - The org is set before the first statement of the transaction: `BEGIN; SELECT set_config(...)`
 *   is one simple-query message sent ahead of the work's statements on the same connection, and
 *   the server runs a connection's messages in order. If set_config fails after BEGIN, the
 *   transaction is aborted and every statement behind it fails (25P02).
 * - Fail-closed: BEGIN failing outright would let the statements already written behind it run
 *   outside a transaction; they run with no org set (set_config is transaction-local, and the
 *   connection is refused unless idle, 'I', with no transaction open, before BEGIN is written),
 *   so row-level security answers nothing and refuses every write, and their outcome is never
 *   used: BEGIN's error is what the caller gets, and the work may write nothing further (its
 *   later statements are refused on the client, see `guard`).
 * - The first error in wire order is the one reported (a statement timeout, 57014, rather than
 *   the 25P02 of the statements behind it).
 * - After any error, ROLLBACK (it waits for everything written before it) and the connection
 *   goes back to the pool only if that answered and left it idle; otherwise it is destroyed.
 * - A read answers before its COMMIT is acknowledged (nothing it read depends on it); the
 *   connection goes back once COMMIT has answered, destroyed if it failed. A write answers after
 *   COMMIT, with its notification in COMMIT's round trip.
 *
 * node-postgres's pipeline caveats: cursors, query streams and the `rows` option are refused on
 * such a connection (none is used by the store); a named statement whose Parse fails is forgotten
 * by the client (client.js `_handleErrorMessage`) so it is parsed again next time.
 */
export interface OrgTransactionOptions {
  client: pg.PoolClient;
  orgId: string;
  /**
   * For a write: the statement sent with COMMIT in its round trip (the change feed's pg_notify);
   * a function is asked once the work has succeeded (its notification may name what the work did).
   */
  notify?: string | (() => string);
  /** For a write: called once its COMMIT has been answered, acknowledged or not. */
  wrote?: () => void;
  /**
   * For a write that notifies nothing (a run-unit report: no cached answer reads usage): the work
   * answers only once COMMIT is acknowledged, as a notifying write does, not before as a read does.
   */
  durable?: boolean;
  /**
   * For a read whose work writes all its statements before its first await (one statement, or
   * several at once): COMMIT is written right behind them, so the connection goes back after one
   * round trip. A statement the work writes later is refused (it would follow COMMIT), so a
   * work wrongly marked fails rather than run outside its transaction.
   */
  oneShot?: boolean;
}

/** node-postgres keeps the status of the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed one. */
export const idle = (client: pg.PoolClient): boolean => (client as unknown as { getTransactionStatus(): string | null }).getTransactionStatus() === 'I';

export class ConnectionNotIdle extends Error {
  constructor() {
    super('PostgreSQL connection not idle at the start of a transaction; not queryable');
  }
}

export async function orgTransaction<T>(options: OrgTransactionOptions, work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const { client, orgId } = options;
  if (!idle(client)) {
    client.release(new ConnectionNotIdle());
    throw new ConnectionNotIdle();
  }
  // Pipeline mode for this transaction only (idle: nothing queued); off again before it goes back (release below).
  (client as unknown as { pipeline: boolean }).pipeline = true;
  const release = client.release.bind(client);
  client.release = (err?: Error | boolean) => {
    (client as unknown as { pipeline: boolean }).pipeline = false;
    client.release = release;
    release(err);
  };
  // Settles with BEGIN's outcome; the work's statements follow it on the wire at once.
  let beginFailed: unknown;
  let open = true;
  const begin = client.query(`BEGIN; SELECT set_config('app.org_id', ${client.escapeLiteral(orgId)}, true)`).then(
    () => undefined,
    (error: unknown) => {
      beginFailed = error;
      return error;
    },
  );
  // The work sees the connection through `guard`: a statement it writes once BEGIN has failed, or
  // once the transaction has ended, is refused rather than run outside it.
  const guard = new Proxy(client, {
    get(target, prop) {
      if (prop === 'query') {
        return (...args: unknown[]) => {
          if (beginFailed !== undefined || !open) {
            const refused = new Error('statement refused: its transaction did not begin or has ended; not queryable');
            const callback = args.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
            if (callback) {
              process.nextTick(() => callback(refused));
              return undefined;
            }
            return Promise.reject(refused);
          }
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });

  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  let committed: Promise<Error | undefined> | undefined;
  try {
    const pending = work(guard);
    if (options.oneShot && options.notify === undefined) {
      open = false;
      committed = client.query('COMMIT').then(
        () => (idle(client) ? undefined : new ConnectionNotIdle()),
        (error: Error) => error,
      );
    }
    outcome = { ok: true, value: await pending };
  } catch (error) {
    outcome = { ok: false, error };
  }
  // BEGIN was written before any of the work's statements, so it has answered by now unless the
  // work wrote none; its failure comes first either way.
  const beginError = await begin;
  if (beginError !== undefined) outcome = { ok: false, error: beginError };

  if (!outcome.ok) {
    open = false;
    // A COMMIT already written ends a failed transaction as ROLLBACK does; ROLLBACK after it waits for it.
    if (committed) await committed;
    await rollback(client);
    throw outcome.error;
  }
  if (committed) {
    void committed.then((failed) => client.release(failed));
    return outcome.value;
  }

  if (options.notify === undefined && !options.durable) {
    open = false;
    client.query('COMMIT').then(
      () => client.release(idle(client) ? undefined : new ConnectionNotIdle()),
      (error: Error) => client.release(error),
    );
    return outcome.value;
  }
  open = false;
  try {
    const notify = typeof options.notify === 'function' ? options.notify() : options.notify;
    await client.query(notify === undefined ? 'COMMIT' : `${notify}; COMMIT`);
  } catch (error) {
    options.wrote?.();
    // The notification failing leaves the transaction open (the rest of a simple query is skipped).
    await rollback(client);
    throw error;
  }
  options.wrote?.();
  client.release(idle(client) ? undefined : new ConnectionNotIdle());
  return outcome.value;
}

/** ROLLBACK after an error, then the connection back to the pool if idle, destroyed otherwise. */
async function rollback(client: pg.PoolClient): Promise<void> {
  let failed: Error | undefined;
  try {
    await client.query('ROLLBACK');
    if (!idle(client)) failed = new ConnectionNotIdle();
  } catch (error) {
    failed = error as Error;
  }
  client.release(failed);
}
