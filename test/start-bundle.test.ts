import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * What `npm start` serves, as a user gets it: its prestart (bin/build-if-stale.js, a no-op when
 * dist/ is current), then the `start` script's own command line (read from package.json) on the
 * bundle, with a fresh data directory. Over real HTTP on 127.0.0.1: /ready, a query with the
 * printed admin key, GraphiQL's page and an asset read from the installed render-graphiql, and a
 * SIGTERM that stops it with exit code 0.
 */

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);
const run = promisify(execFile);

const startScript = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
const [command, ...startArgs] = startScript.split(/\s+/);

let dataDir: string;
let child: ChildProcess;
let stdout = '';
let stderr = '';
let exited: Promise<number | null>;

function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  return (async () => {
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}) before ${what}:\n${stderr}`);
      if (Date.now() > until) throw new Error(`no ${what} within ${ms} ms:\n${stdout}\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
}

let base: string;
let adminKey: string;

beforeAll(async () => {
  // npm runs prestart before start: this builds dist/ only if src/ changed since the last build.
  await run(process.execPath, [path.join(ROOT, 'bin', 'build-if-stale.js')], { cwd: ROOT, timeout: 170_000 }).catch((error: { stdout?: string; stderr?: string }) => {
    throw new Error(`npm start's prestart failed:\n${error.stdout ?? ''}${error.stderr ?? ''}`);
  });

  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-start-'));
  // As from a shell: no TENANTGATE_* settings and no NODE_ENV (vitest sets it to "test").
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTGATE_') && k !== 'NODE_ENV'));
  child = spawn(process.execPath, startArgs, {
    cwd: ROOT,
    env: { ...env, TENANTGATE_DATA_DIR: dataDir, TENANTGATE_HOST: '127.0.0.1', TENANTGATE_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));

  const listening = await waitFor('a "tenantgate listening" line', () => {
    for (const line of stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg: string; url?: string };
      if (entry.msg === 'tenantgate listening' && entry.url) return entry.url;
    }
    return undefined;
  });
  base = new URL(listening).origin;
  adminKey = await waitFor('the admin key', () => /admin key for org "default" \(shown once, store it now\): (tgk_[0-9A-Za-z]+)/.exec(stdout)?.[1]);
}, 180_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('npm start runs the bundle', () => {
  it('is the start script: node with its flags on dist/tenantgate.mjs', () => {
    expect(command).toBe('node');
    expect(startArgs.at(-1)).toBe('dist/tenantgate.mjs');
    expect(startArgs).toContain('--enable-source-maps');
    expect(child.spawnargs.slice(1)).toEqual(startArgs);
  });

  it('answers /ready 200 once started', async () => {
    const status = await waitFor('/ready 200', async () => {
      const res = await fetch(`${base}/ready`);
      await res.arrayBuffer();
      return res.status === 200 ? res.status : undefined;
    });
    expect(status).toBe(200);
  });

  it('answers a viewer query with the printed admin key, and refuses one without a key', async () => {
    const query = (headers: Record<string, string>) =>
      fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query: '{ viewer { org { id name } scopes } }' }),
      });
    const res = await query({ authorization: `Bearer ${adminKey}` });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data?: { viewer: { org: { id: string; name: string }; scopes: string[] } }; errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(body.data?.viewer.org.id).toBe('default');
    expect(body.data?.viewer.scopes).toContain('admin');

    const anonymous = await query({});
    expect(anonymous.status).toBe(401);
    await anonymous.arrayBuffer();
  });

  it('runs a query that keeps coming back compiled, with the same answer (graphql-jit in the bundle, fast-json-stringify left out)', async () => {
    const ask = async () => {
      const res = await fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
        body: JSON.stringify({ query: '{ viewer { scopes org { id name } } }' }),
      });
      expect(res.status).toBe(200);
      return res.text();
    };
    const compiled = async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return Number(/^tenantgate_graphql_executions_total\{engine="compiled"\} (\d+)$/m.exec(text)?.[1]);
    };
    const first = await ask();
    // TENANTGATE_COMPILE_AFTER is 10 by default: the eleventh and later run compiled.
    for (let i = 0; i < 10; i++) await ask();
    const before = await compiled();
    const last = await ask();
    expect(await compiled()).toBe(before + 1);
    expect(before).toBeGreaterThan(0);
    expect(JSON.parse(last)).toEqual(JSON.parse(first));
  });

  it('serves GraphiQL and its assets from the installed @graphql-yoga/render-graphiql', async () => {
    const page = await fetch(`${base}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    const script = /<script defer src="(\/graphiql\/graphiql-[0-9a-f]{16}\.js)"><\/script>/.exec(html)?.[1];
    const style = /<link rel="stylesheet" href="(\/graphiql\/graphiql-[0-9a-f]{16}\.css)" \/>/.exec(html)?.[1];
    expect(script).toBeDefined();
    expect(style).toBeDefined();

    const js = await fetch(`${base}${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const source = await js.text();
    expect(source.length).toBeGreaterThan(1_000_000);
    expect(source).toContain('renderYogaGraphiQL');

    const css = await fetch(`${base}${style}`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    await css.arrayBuffer();
  });

  it('stops on SIGTERM with exit code 0, having written nothing to stderr (no warning, no stack)', async () => {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stdout).toContain('"msg":"stopped"');
    expect(stderr).toBe('');
  });
});
