import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idle, orgTransaction } from '../src/store/postgres/transaction.ts';
import { createScratchDatabase, postgresAvailable, type ScratchDatabase } from './helpers/postgres.ts';

// The pipelined org transaction (src/store/postgres/transaction.ts, issue 13 item 7) on a
// pipeline-mode pool of one connection as the request role: what it keeps of the unpipelined one
// when BEGIN fails, a statement times out, or the work writes late; the store's own behaviour is
// in postgres-store, postgres-wall and postgres-faults.

await postgresAvailable();

let scratch: ScratchDatabase;
let pool: pg.Pool;
beforeAll(async () => {
  scratch = await createScratchDatabase();
  pool = new pg.Pool({ connectionString: scratch.requestUrl, max: 1, statement_timeout: 300 });
});
afterAll(async () => {
  await pool?.end();
  await scratch?.drop();
});

const org = "SELECT current_setting('app.org_id', true) AS org";

/** A fresh transaction on the pool's one connection reads its own org, inside a transaction. */
async function healthy(orgId: string): Promise<void> {
  const client = await pool.connect();
  const rows = await orgTransaction({ client, orgId }, async (c) => {
    const [a, b] = await Promise.all([c.query<{ org: string }>(org), c.query<{ org: string }>("SELECT current_setting('app.org_id', true) AS org")]);
    return [a.rows[0]!.org, b.rows[0]!.org];
  });
  expect(rows).toEqual([orgId, orgId]);
}

describe('pipelined org transaction', () => {
  it('sets the org before the first statement, for statements written together', async () => {
    await healthy('org-a');
    await healthy('org-b');
  });

  it('a failed BEGIN is the error; the statement already written saw no org, the next is refused on the client', async () => {
    const client = await pool.connect();
    // BEGIN replaced by a failing statement, as a BEGIN that fails outright would answer.
    const failing = new Proxy(client, {
      get(target, prop) {
        if (prop === 'query') {
          return (config: unknown, ...rest: unknown[]) =>
            typeof config === 'string' && config.startsWith('BEGIN;') ? target.query('SELECT 1/0') : (target.query as (...a: unknown[]) => unknown)(config, ...rest);
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    let seen: unknown;
    let second: unknown;
    await expect(
      orgTransaction({ client: failing, orgId: 'org-a' }, async (c) => {
        seen = (await c.query<{ org: string | null }>(org)).rows[0]!.org;
        try {
          await c.query('SELECT 2');
        } catch (error) {
          second = error;
          throw error;
        }
      }),
    ).rejects.toMatchObject({ code: '22012' });
    // No stale org: the statement ran with the setting unset (row-level security answers nothing).
    expect(seen === null || seen === '').toBe(true);
    expect(String(second)).toMatch(/refused/);
    await healthy('org-a');
  });

  it('reports the first error in wire order (a statement timeout, not the aborted statements behind it) and keeps the connection', async () => {
    const client = await pool.connect();
    await expect(
      orgTransaction({ client, orgId: 'org-a' }, async (c) => {
        const [slow, next] = await Promise.allSettled([c.query('SELECT pg_sleep(2)'), c.query('SELECT 1')]);
        expect(next).toMatchObject({ status: 'rejected', reason: { code: '25P02' } });
        if (slow.status === 'rejected') throw slow.reason;
      }),
    ).rejects.toMatchObject({ code: '57014' });
    await healthy('org-b');
  });

  it('a write answers after its COMMIT, with the notification in that round trip; a failing one rolls back', async () => {
    let wrote = 0;
    const client = await pool.connect();
    expect(await orgTransaction({ client, orgId: 'org-a', notify: "SELECT pg_notify('tg_test', 'x')", wrote: () => wrote++ }, async (c) => (await c.query(org)).rowCount)).toBe(1);
    expect(wrote).toBe(1);
    const again = await pool.connect();
    await expect(
      orgTransaction({ client: again, orgId: 'org-a', notify: 'SELECT 1/0', wrote: () => wrote++ }, async () => 1),
    ).rejects.toMatchObject({ code: '22012' });
    expect(wrote).toBe(2);
    await healthy('org-a');
  });

  it('refuses a connection left in a transaction, and a statement the work writes after it has ended', async () => {
    const client = await pool.connect();
    await client.query('BEGIN');
    expect(idle(client)).toBe(false);
    let ran = false;
    await expect(orgTransaction({ client, orgId: 'org-a' }, async () => (ran = true))).rejects.toThrow(/not idle/);
    expect(ran).toBe(false);
    await healthy('org-a');

    let late: pg.PoolClient | undefined;
    const other = await pool.connect();
    await orgTransaction({ client: other, orgId: 'org-b' }, async (c) => {
      late = c;
      return (await c.query(org)).rowCount;
    });
    await expect(late!.query("SELECT current_setting('app.org_id', true)")).rejects.toThrow(/refused/);
    await healthy('org-b');
  });

  it('oneShot: COMMIT goes with the read; a later statement is refused, a failing one reported, and the connection kept', async () => {
    const client = await pool.connect();
    expect(await orgTransaction({ client, orgId: 'org-a', oneShot: true }, async (c) => (await c.query<{ org: string }>(org)).rows[0]!.org)).toBe('org-a');
    await healthy('org-b');

    const wrong = await pool.connect();
    let second: unknown;
    await expect(
      orgTransaction({ client: wrong, orgId: 'org-a', oneShot: true }, async (c) => {
        await c.query(org);
        second = c.query(org);
        return await second;
      }),
    ).rejects.toThrow(/refused/);
    await healthy('org-a');

    const timed = await pool.connect();
    await expect(orgTransaction({ client: timed, orgId: 'org-a', oneShot: true }, async (c) => c.query('SELECT pg_sleep(2)'))).rejects.toMatchObject({ code: '57014' });
    await healthy('org-b');
  });
});
