import type { TestGateway } from './gateway.ts';

/**
 * Rows as the store holds them, read with the application out of the way, on either dialect:
 * SQLite's own connection, or the superuser on the gateway's scratch PostgreSQL database (it
 * bypasses RLS: for looking, never for requests). Write the SQL with `?` placeholders; they
 * become $1, $2… on PostgreSQL.
 */
export async function rawRows<R = Record<string, unknown>>(gw: TestGateway, sql: string, params: unknown[] = []): Promise<R[]> {
  if (gw.postgres) {
    let n = 0;
    return (await gw.postgres.query(sql.replace(/\?/g, () => `$${++n}`), params)) as R[];
  }
  return gw.opened.sqlite.prepare(sql).all(...params) as R[];
}

/** The store's tables, sorted (PostgreSQL: schema public; drizzle's journal lives in schema drizzle). */
export async function rawTables(gw: TestGateway): Promise<string[]> {
  const rows = gw.postgres
    ? await rawRows<{ name: string }>(gw, `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`)
    : await rawRows<{ name: string }>(gw, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`);
  return rows.map((r) => r.name);
}

/** A table's column names. */
export async function rawColumns(gw: TestGateway, table: string): Promise<string[]> {
  const rows = gw.postgres
    ? await rawRows<{ name: string }>(gw, `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ? ORDER BY ordinal_position`, [table])
    : await rawRows<{ name: string }>(gw, 'SELECT name FROM pragma_table_info(?)', [table]);
  return rows.map((r) => r.name);
}

/** The first row, or undefined (better-sqlite3's `get`). */
export async function rawGet<R = Record<string, unknown>>(gw: TestGateway, sql: string, params: unknown[] = []): Promise<R | undefined> {
  return (await rawRows<R>(gw, sql, params))[0];
}

/** A statement that returns no rows (a planted or tampered row); answers how many rows it changed. */
export async function rawRun(gw: TestGateway, sql: string, params: unknown[] = []): Promise<number> {
  if (gw.postgres) {
    let n = 0;
    const text = sql.replace(/\?/g, () => `$${++n}`);
    const rows = await gw.postgres.query<{ n: number }>(`WITH changed AS (${text} RETURNING 1) SELECT count(*)::int AS n FROM changed`, params);
    return rows[0]?.n ?? 0;
  }
  return gw.opened.sqlite.prepare(sql).run(...params).changes;
}
