import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createTestGateway, ORG_A, type TestGateway } from './helpers/gateway.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

// Each test closes the gateway it made, once (a later test without one must not close it again).
let gw: TestGateway | undefined;
afterEach(async () => {
  const open = gw;
  gw = undefined;
  await open?.close();
});

describe('edge cases found in review', () => {
  it('reveals a stored value that is not a JSON object as a masked error that logs no plaintext', async () => {
    gw = await createTestGateway();
    const raw = 'ghp_plainTokenSECRET'; // short enough that a SyntaxError would quote it whole
    const sealed = gw.opened.secretBox.seal(ORG_A, 'slack', raw);
    const at = new Date().toISOString();
    await gw.opened.store.forOrg(ORG_A).credentials.upsert({ moduleId: 'slack', ...sealed, fields: [], createdAt: at, updatedAt: at }, SYSTEM_ACTOR);
    const res = await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "slack") }');
    expect(res.body.errors[0].extensions.code).toBe('INTERNAL_SERVER_ERROR');
    expect(res.text).not.toContain('SECRET');
    expect(gw.logger.lines.some((l) => l.includes('not a JSON object'))).toBe(true);
    expect(gw.logger.lines.join('\n')).not.toContain('SECRET');
  });

  it('counts usage past 2^31 without breaking the module list', async () => {
    gw = await createTestGateway();
    gw.opened.sqlite.prepare(`UPDATE modules SET usage_count = 3000000000 WHERE org_id = ? AND module_id = 'github'`).run(ORG_A);
    await gw.gql(gw.keys.admin, 'mutation { recordModuleUsage(orgId: "org-a", moduleId: "github", count: 5) { id } }');
    const res = await gw.gql(gw.keys.a, '{ modules(first: 5) { edges { node { id usageCount } } } }');
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.modules.edges.find((e: { node: { id: string } }) => e.node.id === 'github').node.usageCount).toBe(3000000005);
  });

  it('keeps a secret field named __proto__ and refuses it as a config key', async () => {
    gw = await createTestGateway();
    const secret = JSON.parse('{"__proto__": "hunter2", "token": "t"}') as Record<string, unknown>;
    const set = await gw.gql(gw.keys.a, 'mutation($s: JSONObject!) { setCredential(moduleId: "slack", secret: $s) { fields } }', { s: secret });
    expect(set.body.data.setCredential.fields).toEqual(['__proto__', 'token']);
    const revealed = await gw.gql(gw.keys.a, '{ credentialSecret(moduleId: "slack") }');
    expect(revealed.text).toContain('"__proto__":"hunter2"');
    const config = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>;
    const install = await gw.gql(gw.keys.a, 'mutation($c: JSONObject!) { installModule(input: { id: "p", name: "P", version: "1.0.0", config: $c }) { id } }', { c: config });
    expect(install.body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(install.body.errors[0].message).toContain('__proto__');
  });

  it('answers /ready at once while another process holds the write lock', async () => {
    gw = await createTestGateway({ seed: false });
    const other = new Database(gw.config.database);
    try {
      other.exec('BEGIN IMMEDIATE');
      const res = await gw.fetch('/ready');
      expect(res.status).toBe(200); // busy, not broken (it used to wait 5 s and answer 503)
      other.exec('ROLLBACK');
    } finally {
      other.close();
    }
  });
});

describe('a pre-tenant file with a credential whose module is gone', () => {
  it('is refused whole, naming the module, and left as it was', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { LEGACY_FIXTURE } = await import('./helpers/legacy.ts');
    const { openStore } = await import('../src/store/open.ts');
    const { captureLogger } = await import('../src/logger.ts');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-orphan-'));
    try {
      const file = path.join(dir, 'legacy.db');
      const db = new Database(file);
      db.exec(fs.readFileSync(LEGACY_FIXTURE, 'utf8'));
      db.pragma('foreign_keys = OFF');
      db.prepare(`INSERT INTO credentials VALUES ('ghost-module', '{"t":"x"}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`).run();
      db.close();
      const config = { database: file, dataDir: dir, masterKey: Buffer.alloc(32, 7), previousMasterKeys: [] };
      await expect(openStore(config, captureLogger())).rejects.toThrow('credentials row for module "ghost-module" has no modules row');
      const after = new Database(file);
      expect(after.prepare(`SELECT count(*) FROM pragma_table_info('modules') WHERE name = 'org_id'`).pluck().get()).toBe(0);
      expect(after.prepare('SELECT count(*) FROM credentials').pluck().get()).toBe(3);
      after.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
