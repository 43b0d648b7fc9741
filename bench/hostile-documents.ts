import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { getIntrospectionQuery } from 'graphql';
import { createApp } from '../src/app.ts';
import { SCOPES } from '../src/auth/scopes.ts';
import { loadConfig } from '../src/config.ts';
import { captureLogger } from '../src/logger.ts';
import { issueApiKey } from '../src/repos/api-keys.ts';
import { openStore } from '../src/store/open.ts';
import { SYSTEM_ACTOR } from '../src/store/types.ts';

/**
 * The most expensive documents we could write within the default limits, each sent a few times
 * in sequence through the gateway in process (yoga.fetch), each time with a fresh comment so that
 * no parse or validation cache answers. Reported: the median milliseconds to answer (or refuse),
 * with the default limits and with the document limits (fields, field repeats, literal nesting)
 * and the variable cost check out of the way, i.e. what the same document cost before them.
 * Run alone: `npx tsx bench/hostile-documents.ts`.
 */

const REPEATS = 7;

interface Shape {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const MODULE_FIELDS = ['id', 'orgId', 'name', 'version', 'description', 'config', 'enabled', 'hasCredential', 'usageCount', 'lastUsedAt', 'installedAt', 'updatedAt'];

export function shapes(): Shape[] {
  const list: Shape[] = [];
  list.push({ name: 'baseline: { viewer { scopes } }', query: '{ viewer { scopes } }' });
  list.push({ name: 'one field repeated 1,990 times', query: `{ viewer { org { ${'id '.repeat(1990)}} } }` });
  // At the repeat limit (16) on every key a selection can reach, spread over as many places as aliases allow.
  const page = `edges { node { ${MODULE_FIELDS.map((f) => `${f} `.repeat(16)).join('')}health { ${'status '.repeat(16)}} } }`;
  list.push({ name: '16 repeats of every Module field, 4 aliased pages', query: `{ ${range(4).map((i) => `p${i}: modules(first: 1) { ${page} }`).join(' ')} }` });
  // The same key reached through repeated parents: 16 parents of 16 parents.
  list.push({ name: 'repeated parents (4 modules x 4 edges: 16 merges at each place)', query: `{ ${`modules(first: 1) { ${`edges { node { ${MODULE_FIELDS.join(' ')} } } `.repeat(4)}} `.repeat(4)}}` });
  // Many fragments spread in one selection set: graphql-js compares every pair of them.
  list.push({
    name: '32 fragments of one field spread at each of 4 places, 128 fragments',
    query: `{ ${range(4).map((p) => `p${p}: modules(first: 1) { edges { node { ${range(32).map((i) => `...F${p * 32 + i} `).join('')}} } }`).join(' ')} } ${range(128).map((i) => `fragment F${i} on Module { ${MODULE_FIELDS[i % 12]} }`).join(' ')}`,
  });
  list.push({
    name: '190 fragments of one field spread in one selection set',
    query: `{ modules(first: 1) { edges { node { ${range(190).map((i) => `...F${i} `).join('')}} } } } ${range(190).map((i) => `fragment F${i} on Module { ${MODULE_FIELDS[i % 12]} }`).join(' ')}`,
  });
  // Fragment fan-out: each fragment spreads the next twice, 2^150 fields expanded.
  list.push({
    name: 'fragment fan-out on one type (each of 150 spreads the next twice)',
    query: `{ viewer { ...F0 } } ${range(150).map((i) => `fragment F${i} on Viewer { ...F${i + 1} ...F${i + 1} }`).join(' ')} fragment F150 on Viewer { scopes }`,
  });
  list.push({
    name: 'fragment cycle with fan-out',
    query: `{ viewer { ...F0 } } ${range(100).map((i) => `fragment F${i} on Viewer { ...F${(i + 1) % 100} ...F${(i + 2) % 100} }`).join(' ')}`,
  });
  list.push({ name: 'GraphiQL introspection query', query: getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }) });
  list.push({ name: 'deep nesting within depth 10, 15 aliases', query: `{ ${range(15).map((i) => `a${i}: modules(first: 1) { edges { node { health { status message checkedAt } } } pageInfo { hasNextPage } }`).join(' ')} }` });
  list.push({ name: '20 directives on repeated fields', query: `{ viewer { ${range(16).map(() => 'scopes @include(if: true)').join(' ')} org @skip(if: false) { ${'id @include(if: true) '.repeat(3)}} } }` });
  list.push({ name: 'JSON literal nested 950 deep', query: `mutation { installModule(input: { id: "deep", name: "x", version: "1.0.0", config: { a: ${'['.repeat(950)}1${']'.repeat(950)} } }) { id } }` });
  list.push({
    name: '15 aliases of modules(first: $n), n = 100, every field',
    query: `query($n: Int) { ${range(15).map((i) => `p${i}: modules(first: $n) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ${MODULE_FIELDS.join(' ')} health { status message checkedAt } } } }`).join(' ')} }`,
    variables: { n: 100 },
  });
  return list;
}

interface Timing {
  ms: number;
  min: number;
  outcome: string;
}

export interface HostileRow {
  name: string;
  bytes: number;
  before: Timing;
  after: Timing;
}

const median = (values: number[]) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function measureWith(env: Record<string, string>, list: Shape[]): Promise<Timing[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-hostile-'));
  try {
    const config = loadConfig({ TENANTGATE_DATA_DIR: dir, TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64'), TENANTGATE_PRODUCTION: 'true', TENANTGATE_INTROSPECTION: 'true', ...env });
    const logger = captureLogger('warn');
    const opened = await openStore(config, logger);
    const app = createApp({ store: opened.store, secretBox: opened.secretBox, config, logger });
    try {
      const key = (await issueApiKey(opened.store, 'default', { name: 'bench', scopes: SCOPES }, { keyId: null, scopes: 'all' }, SYSTEM_ACTOR)).secret;
      const send = async (shape: Shape, salt: string) => {
        const body = JSON.stringify({ query: `${shape.query}\n# ${salt}`, variables: shape.variables });
        const started = performance.now();
        const res = await app.yoga.fetch('http://localhost/graphql', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body });
        const json = (await res.json()) as { errors?: Array<{ extensions?: { code?: string; limit?: string } }> };
        const ms = performance.now() - started;
        const error = json.errors?.[0]?.extensions;
        return { ms, outcome: error ? `${error.code}${error.limit ? ` (${error.limit})` : ''}` : 'answered' };
      };
      for (let i = 0; i < 3; i++) await send({ name: 'warm', query: '{ viewer { scopes } }' }, `w${i}`);
      const out: Timing[] = [];
      for (const shape of list) {
        const runs = [];
        for (let i = 0; i < REPEATS; i++) runs.push(await send(shape, randomBytes(8).toString('hex')));
        out.push({ ms: median(runs.map((r) => r.ms)), min: Math.min(...runs.map((r) => r.ms)), outcome: runs[0]!.outcome });
      }
      return out;
    } finally {
      await app.close();
      await opened.store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The shapes, with the document limits out of the way (before) and at their defaults (after). */
export async function measureHostileDocuments(): Promise<HostileRow[]> {
  const list = shapes();
  const off = { TENANTGATE_MAX_FIELDS: '1000000', TENANTGATE_MAX_FIELD_REPEATS: '1000000', TENANTGATE_MAX_FRAGMENT_SPREADS: '1000000', TENANTGATE_MAX_VARIABLE_DEPTH: '1000' };
  const before = await measureWith(off, list);
  const after = await measureWith({}, list);
  return list.map((shape, i) => ({ name: shape.name, bytes: Buffer.byteLength(shape.query), before: before[i]!, after: after[i]! }));
}

export function formatHostileDocuments(rows: HostileRow[]): string {
  const lines = [
    '## Hostile documents',
    '',
    `The most expensive documents found within the default limits, each sent ${REPEATS} times in sequence in process (a fresh comment each time, so no cache answers); median (and fastest) milliseconds to answer or refuse. "Limits off" raises TENANTGATE_MAX_FIELDS, TENANTGATE_MAX_FIELD_REPEATS, TENANTGATE_MAX_FRAGMENT_SPREADS and TENANTGATE_MAX_VARIABLE_DEPTH out of the way (the variable cost check stays on). Target: at most 10 ms.`,
    '',
    '| document | bytes | limits off: ms (min) | outcome | defaults: ms (min) | outcome |',
    '|---|---:|---:|---|---:|---|',
  ];
  for (const row of rows) {
    lines.push(`| ${row.name} | ${row.bytes.toLocaleString('en-US')} | ${row.before.ms.toFixed(2)} (${row.before.min.toFixed(2)}) | ${row.before.outcome} | ${row.after.ms.toFixed(2)} (${row.after.min.toFixed(2)}) | ${row.after.outcome} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${formatHostileDocuments(await measureHostileDocuments())}\n`);
}
