import net from 'node:net';
import { expect } from 'vitest';
import type { GqlResponse, TestGateway } from './gateway.ts';

/** Every field of Module, so that a test sees what a client would. */
export const MODULE_FIELDS = `
  id orgId name version description config enabled usageCount lastUsedAt installedAt updatedAt hasCredential
  health { status message checkedAt }
`;

export const INSTALL = `mutation($i: InstallModuleInput!) { installModule(input: $i) { ${MODULE_FIELDS} } }`;
export const MODULE = `query($id: ID!) { module(id: $id) { ${MODULE_FIELDS} } }`;
export const SET_CREDENTIAL = `mutation($m: ID!, $s: JSONObject!) { setCredential(moduleId: $m, secret: $s) { moduleId fields createdAt updatedAt } }`;
export const REVEAL = `query($m: ID!) { credentialSecret(moduleId: $m) }`;

/** The data of a response that must have succeeded. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function ok(res: GqlResponse): any {
  expect(res.body?.errors, `unexpected errors: ${res.text}`).toBeUndefined();
  expect(res.status).toBe(200);
  return res.body.data;
}

/** The one error of a response that must have failed, with its code. */
export function failure(res: GqlResponse, code: string): { message: string; field?: string } {
  const errors = res.body?.errors as { message: string; extensions?: { code?: string; field?: string } }[] | undefined;
  expect(errors, `expected ${code}, got ${res.text}`).toBeDefined();
  expect(errors).toHaveLength(1);
  expect(errors?.[0]?.extensions?.code, res.text).toBe(code);
  const error = errors?.[0];
  return { message: error?.message ?? '', ...(error?.extensions?.field ? { field: error.extensions.field } : {}) };
}

export async function install(
  gw: TestGateway,
  key: string,
  input: { id: string; name?: string; version?: string; [k: string]: unknown },
): Promise<GqlResponse> {
  return gw.gql(key, INSTALL, { i: { name: `Module ${input.id}`, version: '1.0.0', ...input } });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Every byte a server on 127.0.0.1 sends back for these bytes, until it closes the connection.
 * The client half-closes after sending unless `halfClose` is false: node's server then ends the
 * connection, dropping an answer still on its way (a write's waits for its sync,
 * test/group-commit.test.ts), so bytes whose answers must all come should say `Connection: close`
 * and pass `{ halfClose: false }`.
 */
export function raw(port: number, bytes: string | Buffer, { halfClose = true }: { halfClose?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    if (halfClose) socket.end(bytes);
    else socket.write(bytes);
  });
}
