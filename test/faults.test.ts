import http from 'node:http';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.ts';
import { captureLogger } from '../src/logger.ts';
import { StoreError } from '../src/store/errors.ts';
import { createSqliteStore } from '../src/store/sqlite/store.ts';
import { childEnv, dataDir, post, runCli, startGateway, type ChildGateway } from './fixtures/hardening-child.ts';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * Faults: the process killed mid-write, the CLI writing beside the server, a store that cannot be
 * written, and a graceful stop. The first three use the real gateway in a child process.
 */

const INSTALL = 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }';
const SET_CREDENTIAL = 'mutation($m: ID!, $s: JSONObject!) { setCredential(moduleId: $m, secret: $s) { moduleId } }';

let children: ChildGateway[] = [];
afterEach(async () => {
  await Promise.all(children.map((c) => c.cleanup()));
  children = [];
});

async function start(env?: (dir: string) => Record<string, string>): Promise<ChildGateway> {
  const dir = dataDir();
  const child = await startGateway(dir, env ? env(dir) : childEnv(dir));
  children.push(child);
  return child;
}

/**
 * Writers that install modules (and store a credential for every other one) one request at a
 * time, until `stop()` or until the connection dies. Every write is `acked` when its answer says
 * it happened; a write whose answer never came is `unknown`.
 */
function writeStream(child: ChildGateway, writers: number, prefix: string) {
  const acked = new Set<string>();
  const ackedCredentials = new Set<string>();
  const unknown = new Set<string>();
  const failures: string[] = [];
  let running = true;
  let n = 0;
  const writer = async () => {
    while (running) {
      const id = `${prefix}-${n++}`;
      const withCredential = n % 2 === 0;
      unknown.add(id);
      try {
        const res = await post(child.url, child.adminKey, INSTALL, { i: { id, name: id, version: '1.0.0', config: { n } } });
        if (res.status !== 200 || res.body.errors) {
          failures.push(`${id}: ${res.status} ${JSON.stringify(res.body)}`);
          continue;
        }
        acked.add(id);
        unknown.delete(id);
        if (withCredential) {
          unknown.add(`cred:${id}`);
          const cred = await post(child.url, child.adminKey, SET_CREDENTIAL, { m: id, s: { token: `t-${id}` } });
          if (cred.status !== 200 || cred.body.errors) failures.push(`cred ${id}: ${cred.status} ${JSON.stringify(cred.body)}`);
          else {
            ackedCredentials.add(id);
            unknown.delete(`cred:${id}`);
          }
        }
      } catch {
        return; // the connection died (the process was killed)
      }
    }
  };
  const done = Promise.all(Array.from({ length: writers }, writer));
  return {
    acked,
    ackedCredentials,
    unknown,
    failures,
    done,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const until = async (condition: () => boolean, timeoutMs = 30_000) => {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('a gateway process killed with SIGKILL in the middle of writes', () => {
  it('loses no acknowledged write and leaves an intact store', async () => {
    const child = await start();
    const stream = writeStream(child, 4, 'kill');
    await until(() => stream.acked.size >= 150);
    child.proc.kill('SIGKILL');
    const exit = await child.exited;
    await stream.done;
    expect(exit.signal).toBe('SIGKILL');
    expect(stream.failures).toEqual([]);

    const db = new Database(child.database);
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('foreign_key_check')).toEqual([]);
      const modules = new Set((db.prepare("SELECT module_id FROM modules WHERE org_id = 'default' AND module_id LIKE 'kill-%'").all() as { module_id: string }[]).map((r) => r.module_id));
      const credentials = new Set((db.prepare("SELECT module_id FROM credentials WHERE org_id = 'default' AND module_id LIKE 'kill-%'").all() as { module_id: string }[]).map((r) => r.module_id));
      // Every acknowledged write is there...
      for (const id of stream.acked) expect(modules.has(id), id).toBe(true);
      for (const id of stream.ackedCredentials) expect(credentials.has(id), `credential ${id}`).toBe(true);
      // ...and nothing is there that was not sent: at most the writes in flight at the kill.
      for (const id of modules) expect(stream.acked.has(id) || stream.unknown.has(id), id).toBe(true);
      for (const id of credentials) expect(stream.ackedCredentials.has(id) || stream.unknown.has(`cred:${id}`), `credential ${id}`).toBe(true);
      expect(modules.size - stream.acked.size).toBeLessThanOrEqual(4);
    } finally {
      db.close();
    }

    // The same data directory starts again and serves exactly what is there.
    const again = await startGateway(child.dir, { ...child.env }, false);
    children.push(again);
    const count = await post(again.url, child.adminKey, '{ modules(first: 1) { totalCount } }');
    expect(count.body.data.modules.totalCount).toBeGreaterThanOrEqual(stream.acked.size);
  });
});

describe('the server and the CLI on one SQLite file', () => {
  it('both write at once without SQLITE_BUSY', async () => {
    const child = await start();
    const stream = writeStream(child, 2, 'busy');
    await until(() => stream.acked.size >= 20);
    const cli = (args: string[]) => runCli(args, child.env);
    const results = await Promise.all([
      cli(['orgs', 'create', 'cli-a', '--name', 'CLI A']),
      cli(['orgs', 'create', 'cli-b', '--name', 'CLI B']),
      cli(['keys', 'create', '--org', 'default', '--name', 'cli', '--scopes', 'modules:read']),
      cli(['migrate']),
    ]);
    const acked = stream.acked.size;
    await until(() => stream.acked.size >= acked + 20);
    await stream.stop();

    for (const r of results) {
      expect(r.stderr).not.toMatch(/SQLITE_BUSY|database is locked/i);
      expect(r.code, r.stderr).toBe(0);
    }
    expect(stream.failures).toEqual([]);
    expect(child.stderr.join('\n')).not.toMatch(/SQLITE_BUSY|database is locked/i);
    const orgs = await post(child.url, child.adminKey, '{ orgs { id } }');
    expect(orgs.body.data.orgs.map((o: { id: string }) => o.id)).toEqual(expect.arrayContaining(['cli-a', 'cli-b']));
  });
});

describe('SIGTERM', () => {
  it('lets the request in flight finish, flushes key last-used times, and exits 0', async () => {
    const child = await start();
    const url = new URL(child.url);
    // A request whose body is still arriving when the signal comes.
    const body = Buffer.from(JSON.stringify({ query: 'mutation { installModule(input: { id: "in-flight", name: "x", version: "1.0.0" }) { id } }' }));
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${child.adminKey}` } },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.write(body.subarray(0, 20));
      // Headers and a first chunk are in; the signal comes; the rest of the body only once the
      // gateway has begun shutting down.
      setTimeout(() => {
        child.proc.kill('SIGTERM');
        until(() => child.stdout.some((l) => l.includes('"msg":"shutting down"'))).then(
          () => setTimeout(() => req.end(body.subarray(20)), 200),
          reject,
        );
      }, 500);
    });
    const { status, text } = await answer;
    expect(status).toBe(200);
    expect(JSON.parse(text)).toEqual({ data: { installModule: { id: 'in-flight' } } });
    const exit = await child.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    // The signal came while the request was in flight: the log says so, in this order.
    const at = (test: (l: string) => boolean) => child.stdout.findIndex(test);
    const shuttingDown = at((l) => l.includes('"msg":"shutting down"'));
    const served = at((l) => l.includes('"msg":"request"') && l.includes('"operation":"installModule"'));
    const stopped = at((l) => l.includes('"msg":"stopped"'));
    expect(shuttingDown).toBeGreaterThanOrEqual(0);
    expect(served).toBeGreaterThan(shuttingDown);
    expect(stopped).toBeGreaterThan(served);

    const db = new Database(child.database, { readonly: true });
    try {
      const row = db.prepare("SELECT last_used_at FROM api_keys WHERE org_id = 'default'").get() as { last_used_at: string | null };
      // Last-used times are written every 5 s or on shutdown; this process lived less than that.
      expect(row.last_used_at).not.toBeNull();
      expect(db.prepare("SELECT count(*) AS n FROM modules WHERE module_id = 'in-flight'").get()).toEqual({ n: 1 });
    } finally {
      db.close();
    }
  });
});

describe('a store that cannot be written', () => {
  let gw: TestGateway;
  afterEach(async () => gw.close());

  it('read-only: reads still work, writes answer SERVICE_UNAVAILABLE, /ready answers 503, nothing crashes', async () => {
    gw = await createTestGateway();
    const readonly = new Database(gw.config.database, { readonly: true, fileMustExist: true });
    const logger = captureLogger('debug');
    const store = createSqliteStore(readonly, gw.config.database);
    const app = createApp({ store, secretBox: gw.opened.secretBox, config: gw.config, logger });
    const call = async (query: string) => {
      const res = await app.yoga.fetch('http://localhost/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.keys.a}` },
        body: JSON.stringify({ query }),
      });
      return { status: res.status, body: await res.json() };
    };
    try {
      expect((await app.yoga.fetch('http://localhost/ready')).status).toBe(503);
      expect((await call('{ modules { totalCount } }')).body.data.modules.totalCount).toBe(3);
      const write = await call('mutation { installModule(input: { id: "ro", name: "x", version: "1.0.0" }) { id } }');
      expect(write.status).toBe(200);
      expect(write.body.errors).toEqual([
        expect.objectContaining({ message: 'The store cannot take this request right now; try again later', extensions: { code: 'SERVICE_UNAVAILABLE' }, path: ['installModule'] }),
      ]);
      expect(JSON.stringify(write.body)).not.toMatch(/readonly|sqlite|attempt to write/i);
      const credential = await call('mutation { setCredential(moduleId: "slack", secret: { token: "x" }) { moduleId } }');
      expect(credential.body.errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      const metrics = await (await app.yoga.fetch('http://localhost/metrics')).text();
      expect(metrics).toMatch(/tenantgate_store_errors_total\{kind="readonly"\} 2/);
      // The store says what kind of failure it was, in its own words: nothing above it reads SQLite's codes.
      const at = new Date().toISOString();
      const module = { moduleId: 'ro2', name: 'x', version: '1.0.0', description: null, config: '{}', enabled: true, installedAt: at, updatedAt: at };
      const failed = await store.forOrg(ORG_A).modules.insert(module, SYSTEM_ACTOR).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(StoreError);
      expect(failed).toMatchObject({ kind: 'readonly', retryable: true, code: expect.stringMatching(/^SQLITE_READONLY/) });
      // An error of the caller's own (here a refused revocation inside the transaction) passes through as it was.
      const refusal = new Error('refused');
      const keyId = (await store.forOrg(ORG_A).apiKeys.list())[0]!.id;
      await expect(store.forOrg(ORG_A).apiKeys.revokeTree(keyId, at, () => { throw refusal; }, SYSTEM_ACTOR)).rejects.toBe(refusal);
      // Last-used times cannot be written either: a warning, not a crash.
      await app.close();
      expect(logger.lines.join('\n')).toMatch(/could not record key last-used times/);
      expect(logger.lines.join('\n')).toMatch(/"msg":"store is not ready","reason":"store is read-only"/);
    } finally {
      readonly.close();
    }
  });

  it('full (max_page_count): writes answer SERVICE_UNAVAILABLE and change nothing, /ready answers 503, then recovers', async () => {
    gw = await createTestGateway();
    const db = gw.opened.sqlite;
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.pragma(`max_page_count = ${pages}`);
    const before = db.prepare('SELECT count(*) AS n FROM modules').get();
    try {
      expect((await gw.fetch('/ready')).status).toBe(503);
      const big = { big: 'x'.repeat(60_000) };
      const res = await gw.gql(gw.keys.a, INSTALL, { i: { id: 'too-much', name: 'x', version: '1.0.0', config: big } });
      expect(res.status).toBe(200);
      expect(res.body.errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      expect(res.text).not.toMatch(/full|sqlite/i);
      const cred = await gw.gql(gw.keys.a, SET_CREDENTIAL, { m: 'slack', s: { a: 'y'.repeat(16_000), b: 'z'.repeat(16_000), c: 'w'.repeat(16_000) } });
      expect(cred.body.errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      expect(db.prepare('SELECT count(*) AS n FROM modules').get()).toEqual(before);
      expect(db.prepare("SELECT count(*) AS n FROM credentials WHERE org_id = ? AND module_id = 'slack'").get(ORG_A)).toEqual({ n: 0 });
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.pragma('max_page_count = 4294967294');
    }
    expect((await gw.fetch('/ready')).status).toBe(200);
    const res = await gw.gql(gw.keys.a, INSTALL, { i: { id: 'fits-now', name: 'x', version: '1.0.0', config: { big: 'x'.repeat(60_000) } } });
    expect(res.body.data.installModule.id).toBe('fits-now');
    const metrics = await (await gw.fetch('/metrics')).text();
    expect(metrics).toMatch(/tenantgate_store_errors_total\{kind="full"\} 2/);
  });
});
