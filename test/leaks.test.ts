/**
 * Known secrets go in through every write path (and some refused ones); afterwards they appear in
 * plaintext nowhere: not in the database files' bytes (main file, -wal and -shm, read while the
 * gateway runs and again after it closes), not in any response but credentialSecret's, and not in
 * any log line.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { failure, install, ok, REVEAL, SET_CREDENTIAL } from './helpers/api.ts';
import { createTestGateway, DEFAULT_DIALECT, ORG_A, ORG_B, TRANSPORTS, type GqlResponse, type TestGateway, type Transport } from './helpers/gateway.ts';
import { rawGet, rawRun } from './helpers/raw.ts';

const tag = randomBytes(6).toString('hex');
const canary = (what: string) => `CANARY-${what}-${tag}`;

// Every value written, including ones later replaced, deleted, uninstalled or refused.
const SECRETS = {
  aToken: canary('a-token'),
  aPassword: canary('a-password'),
  aUnicode: `\u043f\u0430\u0440\u043e\u043b\u044c-${canary('a-unicode')}-\u5bc6\u7801`,
  aLong: `${'x'.repeat(9000)}${canary('a-long')}${'y'.repeat(7000)}`,
  aReplaced: canary('a-replaced'),
  aDeleted: canary('a-deleted'),
  aUninstalled: canary('a-uninstalled'),
  bToken: canary('b-token'),
  bSame: canary('shared-value'), // the same value in both orgs
  refusedNested: canary('refused-nested'),
  refusedTooLong: canary('refused-too-long'),
  refusedMissingModule: canary('refused-missing-module'),
} as const;
const ALL = Object.values(SECRETS);
/** The part of each secret that is unmistakable (the long one is mostly filler). */
const NEEDLES = ALL.map((s) => (s.includes('CANARY') ? (s.match(/CANARY-[a-z-]+-[0-9a-f]{12}/)?.[0] ?? s) : s));

interface Recorded {
  query: string;
  res: GqlResponse;
}

interface Run {
  gw: TestGateway;
  responses: Recorded[];
  filesWhileRunning: Map<string, Buffer>;
  filesAfterClose: Map<string, Buffer>;
  /** Whatever reached the console or stdout/stderr while the secrets went through, besides the logger. */
  stray: string[];
}

function readFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of fs.readdirSync(dir)) out.set(name, fs.readFileSync(path.join(dir, name)));
  return out;
}

/** Ways a plaintext could sit in bytes without being encrypted. */
function encodings(needle: string): Buffer[] {
  const utf8 = Buffer.from(needle, 'utf8');
  return [utf8, Buffer.from(needle, 'utf16le'), Buffer.from(utf8.toString('base64')), Buffer.from(utf8.toString('hex'))];
}

async function writeAndReadEverything(transport: Transport): Promise<Run> {
  const stray: string[] = [];
  const spies = [
    ...(['log', 'info', 'warn', 'error', 'debug', 'trace'] as const).map((m) =>
      vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void stray.push(args.map(String).join(' '))),
    ),
    ...[process.stdout, process.stderr].map((stream) =>
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        stray.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
        return true;
      }),
    ),
  ];
  try {
    return { ...(await writeAndRead(transport)), stray };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

async function writeAndRead(transport: Transport): Promise<Omit<Run, 'stray'>> {
  const gw = await createTestGateway({ transport });
  const responses: Recorded[] = [];
  const call = async (key: string, query: string, variables?: Record<string, unknown>): Promise<GqlResponse> => {
    const res = await gw.gql(key, query, variables);
    responses.push({ query, res });
    return res;
  };
  const { a, b, admin } = gw.keys;

  // Writes that are kept.
  ok(await call(a, SET_CREDENTIAL, { m: 'github', s: { token: SECRETS.aToken, password: SECRETS.aPassword, same: SECRETS.bSame } }));
  ok(await call(a, SET_CREDENTIAL, { m: 'slack', s: { unicode: SECRETS.aUnicode, long: SECRETS.aLong } }));
  ok(await call(b, SET_CREDENTIAL, { m: 'github', s: { token: SECRETS.bToken, same: SECRETS.bSame } }));
  // Replaced, deleted, uninstalled.
  ok(await install(gw, a, { id: 'replaced' }));
  ok(await call(a, SET_CREDENTIAL, { m: 'replaced', s: { token: SECRETS.aReplaced } }));
  ok(await call(a, SET_CREDENTIAL, { m: 'replaced', s: { token: 'the-new-value' } }));
  ok(await call(a, SET_CREDENTIAL, { m: 'only-org-a', s: { token: SECRETS.aDeleted } }));
  ok(await call(a, 'mutation { deleteCredential(moduleId: "only-org-a") }'));
  ok(await install(gw, a, { id: 'uninstalled' }));
  ok(await call(a, SET_CREDENTIAL, { m: 'uninstalled', s: { token: SECRETS.aUninstalled } }));
  ok(await call(a, 'mutation { uninstallModule(id: "uninstalled") { id hasCredential } }'));
  // Refused writes: the answer must not echo the value.
  failure(await call(a, SET_CREDENTIAL, { m: 'slack', s: { ok: 'x', nested: { deep: SECRETS.refusedNested } } }), 'BAD_USER_INPUT');
  failure(await call(a, SET_CREDENTIAL, { m: 'slack', s: { big: `${SECRETS.refusedTooLong}${'z'.repeat(17_000)}` } }), 'BAD_USER_INPUT');
  failure(await call(a, SET_CREDENTIAL, { m: 'not-installed', s: { token: SECRETS.refusedMissingModule } }), 'NOT_FOUND');
  failure(await call(b, SET_CREDENTIAL, { m: 'only-org-a', s: { token: SECRETS.refusedMissingModule } }), 'NOT_FOUND');

  // Every read a client could make, with every kind of key.
  const reads = [
    `{ modules(first: 100) { totalCount edges { cursor node { id orgId name version description config enabled usageCount lastUsedAt installedAt updatedAt hasCredential health { status message checkedAt } } } } }`,
    '{ module(id: "github") { id config hasCredential } }',
    '{ credentials { moduleId fields createdAt updatedAt } }',
    '{ hasCredential(moduleId: "github") }',
    '{ viewer { org { id name } apiKey { id name prefix scopes } scopes } }',
    '{ apiKeys { id name prefix scopes } }',
  ];
  for (const key of [a, b, admin]) for (const q of reads) ok(await call(key, q));
  ok(await call(admin, '{ orgs { id name } unhealthyModules { id orgId } }'));
  ok(await call(admin, 'mutation { reportModuleHealth(orgId: "org-a", moduleId: "github", status: UNHEALTHY, message: "down") { id config } }'));
  ok(await call(admin, 'mutation { recordModuleUsage(orgId: "org-a", moduleId: "github") { id config hasCredential } }'));
  // The one path that returns values.
  ok(await call(a, REVEAL, { m: 'github' }));
  ok(await call(a, REVEAL, { m: 'slack' }));
  ok(await call(b, REVEAL, { m: 'github' }));
  ok(await call(a, REVEAL, { m: 'replaced' }));
  // A credential that cannot be opened (moved into another org's row): a masked error, logged.
  const moved = (await rawGet<Record<string, Buffer>>(gw, 'SELECT ciphertext, iv, tag FROM credentials WHERE org_id = ? AND module_id = ?', [ORG_A, 'github']))!;
  await rawRun(gw, 'UPDATE credentials SET ciphertext = ?, iv = ?, tag = ? WHERE org_id = ? AND module_id = ?', [moved.ciphertext, moved.iv, moved.tag, ORG_B, 'github']);
  failure(await call(b, REVEAL, { m: 'github' }), 'INTERNAL_SERVER_ERROR');

  await gw.app.services.authenticator.flush();
  const filesWhileRunning = readFiles(gw.dir);
  await gw.close({ keepDir: true }); // the store's close checkpoints the WAL into the main file
  const filesAfterClose = readFiles(gw.dir);
  return { gw, responses, filesWhileRunning, filesAfterClose };
}

// Over the served listener and in process: whichever path carries the secrets leaks none.
describe.each(TRANSPORTS)('no secret leaks, over %s', (transport) => {
  let gw: TestGateway;
  let responses: Recorded[];
  let filesWhileRunning: Map<string, Buffer>;
  let filesAfterClose: Map<string, Buffer>;
  let stray: string[];
  beforeAll(async () => {
    ({ gw, responses, filesWhileRunning, filesAfterClose, stray } = await writeAndReadEverything(transport));
  });
  afterAll(() => {
    if (gw) fs.rmSync(gw.dir, { recursive: true, force: true });
  });

  // These two search the store's files (SQLite's database and WAL); on PostgreSQL the bytes live
  // in the server, out of a test's reach on any machine. The sealed rows are checked there by
  // test/credentials.test.ts (ciphertext holds no plaintext) on both dialects.
  it.skipIf(DEFAULT_DIALECT === 'postgres')('the searches can find what is there: names, field names and the secrets themselves where they belong', () => {
    const db = Buffer.concat([...filesWhileRunning.values()]);
    // Non-secret data written in the same requests is found in the same bytes.
    expect(db.includes(Buffer.from('"password"'))).toBe(true); // field names are stored, by design
    expect(db.includes(Buffer.from('only-org-a for org-a'))).toBe(true);
    // The revealed answers hold the secrets, so a search of responses would see them.
    const revealed = responses.filter((r) => r.query === REVEAL && !r.res.body.errors).map((r) => r.res.text).join('\n');
    for (const s of [SECRETS.aToken, SECRETS.aPassword, SECRETS.aUnicode, SECRETS.aLong, SECRETS.bToken, SECRETS.bSame]) {
      expect(revealed.includes(JSON.stringify(s).slice(1, -1))).toBe(true);
    }
  });

  it.skipIf(DEFAULT_DIALECT === 'postgres')('appear nowhere in the database files, WAL included, while the gateway runs and after it closes', () => {
    const wal = [...filesWhileRunning.keys()].find((n) => n.endsWith('-wal'));
    expect(wal, `files: ${[...filesWhileRunning.keys()].join(', ')}`).toBeDefined();
    expect(filesWhileRunning.get(wal ?? '')?.length ?? 0).toBeGreaterThan(0); // the WAL really held the writes
    const found: string[] = [];
    for (const [when, files] of [['running', filesWhileRunning], ['closed', filesAfterClose]] as const) {
      for (const [name, bytes] of files) {
        for (const needle of NEEDLES) {
          for (const encoded of encodings(needle)) if (bytes.includes(encoded)) found.push(`${when}: ${name} holds ${needle}`);
        }
      }
    }
    expect(found).toEqual([]);
  });

  it('appear in no response except credentialSecret, and there only for the org that stored them', () => {
    const leaked: string[] = [];
    for (const { query, res } of responses) {
      const isReveal = query === REVEAL;
      for (const needle of NEEDLES) {
        if (!res.text.includes(needle) && !JSON.stringify(res.body).includes(needle)) continue;
        if (!isReveal) leaked.push(`${query.slice(0, 60)} -> ${needle}`);
      }
    }
    expect(leaked).toEqual([]);
    // Each reveal answered exactly its own org's values; the failed one said nothing.
    const reveals = responses.filter((r) => r.query === REVEAL).map((r) => r.res.body);
    expect(reveals).toEqual([
      { data: { credentialSecret: { token: SECRETS.aToken, password: SECRETS.aPassword, same: SECRETS.bSame } } },
      { data: { credentialSecret: { unicode: SECRETS.aUnicode, long: SECRETS.aLong } } },
      { data: { credentialSecret: { token: SECRETS.bToken, same: SECRETS.bSame } } },
      { data: { credentialSecret: { token: 'the-new-value' } } },
      expect.objectContaining({ data: { credentialSecret: null } }),
    ]);
  });

  it('appear in no log line (the log level is debug, a decryption failure was logged) and on no console', () => {
    const lines = gw.logger.lines;
    expect(lines.length).toBeGreaterThan(50);
    expect(lines.some((l) => l.includes('"level":"error"'))).toBe(true); // the masked error was logged
    const leaked = [...lines, ...stray].filter((line) => NEEDLES.some((n) => line.includes(n) || line.includes(JSON.stringify(n).slice(1, -1))));
    expect(leaked).toEqual([]);
  });
});
