import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_ERROR_CODES, ERROR_CODES, YOGA_ERROR_CODES, type YogaErrorCode } from '../src/errors.ts';
import { createTestGateway, type TestGateway } from './helpers/gateway.ts';

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(file) : file.endsWith('.ts') ? [file] : [];
  });
}

/** Codes the source writes as literals: `appError('X', ...)` and `code: 'X'`. */
function raisedInSource(): Map<string, string> {
  const raised = new Map<string, string>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    for (const match of fs.readFileSync(file, 'utf8').matchAll(/(?:appError\(\s*|\bcode: )'([A-Z][A-Z_]+)'/g)) {
      raised.set(match[1]!, path.relative(ROOT, file));
    }
  }
  return raised;
}

describe('the lists of error codes', () => {
  it('hold every code the source raises, and the source raises every code of ours', () => {
    const raised = raisedInSource();
    const listed = new Set<string>(CLIENT_ERROR_CODES);
    expect([...raised].filter(([code]) => !listed.has(code)).map(([code, file]) => `${code} in ${file}`)).toEqual([]);
    expect(ERROR_CODES.filter((code) => !raised.has(code))).toEqual([]);
    expect(new Set(CLIENT_ERROR_CODES).size).toBe(ERROR_CODES.length + YOGA_ERROR_CODES.length);
  });

  describe("Yoga's codes, as the served listener answers them", () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await createTestGateway({ seed: false });
    });
    afterAll(async () => gw?.close());

    const post = (body: unknown) =>
      gw.fetch('/graphql', {
        method: 'POST',
        headers: { authorization: `Bearer ${gw.keys.a}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    const requests: Record<YogaErrorCode, () => Promise<Response>> = {
      GRAPHQL_PARSE_FAILED: () => post({ query: '{ viewer {' }),
      GRAPHQL_VALIDATION_FAILED: () => post({ query: '{ noSuchField }' }),
      OPERATION_RESOLUTION_FAILURE: () => post({ query: 'query A { __typename }', operationName: 'B' }),
      INTERNAL_SERVER_ERROR: async () => {
        gw.opened.sqlite.exec('ALTER TABLE modules RENAME TO modules_gone');
        try {
          return await post({ query: '{ modules(first: 1) { totalCount } }' });
        } finally {
          gw.opened.sqlite.exec('ALTER TABLE modules_gone RENAME TO modules');
        }
      },
    };

    it.each(YOGA_ERROR_CODES)('%s', async (code) => {
      const res = await requests[code]();
      const body = (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
      expect(body.errors?.[0]?.extensions?.code).toBe(code);
    });
  });
});
