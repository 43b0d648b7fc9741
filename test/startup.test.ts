import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * bin/build-if-stale.js (npm start's prestart) on a small project of its own: the script and
 * bin/bundle.js, a src/ folder, the tsconfig files and package files beside it, and this
 * repository's node_modules (TypeScript, esbuild, and packages for the bundle to take in or leave out).
 */

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);
const run = promisify(execFile);

let project: string;
const file = (p: string) => path.join(project, p);
const write = (p: string, text: string) => {
  fs.mkdirSync(path.dirname(file(p)), { recursive: true });
  fs.writeFileSync(file(p), text);
};

async function buildIfStale(): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run(process.execPath, [file('bin/build-if-stale.js')], { cwd: project, timeout: 120_000 });
    return { code: 0, stderr };
  } catch (error) {
    const e = error as { code: number; stderr: string; stdout: string };
    return { code: e.code, stderr: e.stderr + e.stdout };
  }
}

const COMPILING = /^tenantgate: compiling src\/ into dist\//;
const built = () => fs.readFileSync(file('dist/src/main.js'), 'utf8');
const builtAt = () => fs.statSync(file('dist/src/main.js')).mtimeMs;
const bundled = () => fs.readFileSync(file('dist/tenantgate.mjs'), 'utf8');
const bundledAt = () => fs.statSync(file('dist/tenantgate.mjs')).mtimeMs;

beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-build-'));
  fs.mkdirSync(file('bin'));
  fs.copyFileSync(path.join(ROOT, 'bin', 'build-if-stale.js'), file('bin/build-if-stale.js'));
  fs.copyFileSync(path.join(ROOT, 'bin', 'bundle.js'), file('bin/bundle.js'));
  fs.copyFileSync(path.join(ROOT, 'bin', 'unused-fast-json-stringify.js'), file('bin/unused-fast-json-stringify.js'));
  fs.copyFileSync(path.join(ROOT, 'bin', 'build-dashboard.js'), file('bin/build-dashboard.js'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), file('node_modules'), 'dir');
  write('package.json', '{ "name": "p", "type": "module", "private": true }\n');
  write('package-lock.json', '{}\n');
  write('tsconfig.json', JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', strict: true, types: [], skipLibCheck: true } }));
  write('tsconfig.build.json', JSON.stringify({ extends: './tsconfig.json', compilerOptions: { outDir: 'dist', rootDir: '.' }, include: ['src'] }));
  write('src/main.ts', 'export const version: string = "one";\n');
});
afterAll(() => fs.rmSync(project, { recursive: true, force: true }));

describe('npm start compiles only what changed since the last build', () => {
  it('builds a fresh checkout (no dist/), then skips an unchanged tree', async () => {
    const first = await buildIfStale();
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(COMPILING);
    expect(built()).toContain('"one"');
    expect(bundled()).toContain('"one"');
    expect(fs.existsSync(file('dist/.build-stamp'))).toBe(true);

    const at = [builtAt(), bundledAt()];
    const second = await buildIfStale();
    expect(second).toEqual({ code: 0, stderr: '' });
    expect([builtAt(), bundledAt()]).toEqual(at);
  });

  it('bundles the dependencies into dist/tenantgate.mjs, leaves better-sqlite3 to be loaded from node_modules, and maps back to src/', async () => {
    write(
      'src/main.ts',
      [
        "import Database from 'better-sqlite3';",
        "import { parse, print } from 'graphql';",
        "const db = new Database(':memory:');",
        "const row = db.prepare('select 40 + 2 as answer').get() as { answer: number };",
        "console.log(print(parse('{ viewer { id } }')).replace(/\\s+/g, ' '), row.answer);",
        "console.log(new Error('where').stack?.split('\\n')[1]);",
        '',
      ].join('\n'),
    );
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    const text = bundled();
    // (node_modules is a link to this repository's, so esbuild names the files by their real path.)
    expect(text).toMatch(/^\/\/ \S*node_modules\/graphql\/language\/parser\.js$/m);
    expect(text).toMatch(/^import \w+ from "better-sqlite3";$/m);
    expect(text).not.toMatch(/^\/\/ \S*node_modules\/better-sqlite3\//m);

    const { stdout } = await run(process.execPath, ['--enable-source-maps', file('dist/tenantgate.mjs')], { cwd: project, timeout: 30_000 });
    const [printed, where] = stdout.trim().split('\n');
    expect(printed).toBe('{ viewer { id } } 42');
    expect(where).toMatch(/src\/main\.ts:6:\d+\)?$/);
  });

  it('rebuilds after an edit under src/', async () => {
    write('src/main.ts', 'export const version: string = "two";\n');
    const result = await buildIfStale();
    expect(result.stderr).toMatch(COMPILING);
    expect(built()).toContain('"two"');
    expect(bundled()).toContain('"two"');
    expect((await buildIfStale()).stderr).toBe('');
  });

  it('rebuilds after a new file, and after an mtime that went backwards (an older checkout)', async () => {
    write('src/extra.ts', 'export const extra = 1;\n');
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    expect(fs.existsSync(file('dist/src/extra.js'))).toBe(true);

    write('src/main.ts', 'export const version: string = "old";\n');
    const past = new Date(Date.now() - 86_400_000);
    fs.utimesSync(file('src/main.ts'), past, past);
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    expect(built()).toContain('"old"');
  });

  it('rebuilds after a change to a tsconfig file, package.json or the bundle script', async () => {
    write('tsconfig.build.json', JSON.stringify({ extends: './tsconfig.json', compilerOptions: { outDir: 'dist', rootDir: '.', removeComments: true }, include: ['src'] }));
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    write('package.json', '{ "name": "p", "type": "module", "private": true, "version": "1.0.0" }\n');
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(file('bin/bundle.js'), later, later);
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    expect((await buildIfStale()).stderr).toBe('');
  });

  it('a failed build (tsc, then esbuild) stops the start and leaves no stamp, so the next start tries again', async () => {
    write('src/main.ts', 'export const version: string = 3;\n');
    const failed = await buildIfStale();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('tenantgate: build failed (tsc');
    expect(fs.existsSync(file('dist/.build-stamp'))).toBe(false);
    expect((await buildIfStale()).code).toBe(1);

    // TypeScript does not resolve side-effect imports; esbuild must.
    write('src/main.ts', "import 'tenantgate-no-such-package';\nexport const version: string = \"unbundled\";\n");
    const unbundled = await buildIfStale();
    expect(unbundled.code).toBe(1);
    expect(unbundled.stderr).toContain('Could not resolve "tenantgate-no-such-package"');
    expect(unbundled.stderr).toContain('tenantgate: build failed (bundling dist/tenantgate.mjs with esbuild)');
    expect(fs.existsSync(file('dist/.build-stamp'))).toBe(false);

    write('src/main.ts', 'export const version: string = "fixed";\n');
    const mended = await buildIfStale();
    expect(mended.code).toBe(0);
    expect(built()).toContain('"fixed"');
    expect(bundled()).toContain('"fixed"');
  });

  it('npm run build (--force) rebuilds an unchanged tree', async () => {
    const at = bundledAt();
    const { stderr } = await run(process.execPath, [file('bin/build-if-stale.js'), '--force'], { cwd: project, timeout: 120_000 });
    expect(stderr).toMatch(COMPILING);
    expect(bundledAt()).toBeGreaterThan(at);
    expect((await buildIfStale()).stderr).toBe('');
  });

  it('rebuilds when dist/ or only the bundle was removed', async () => {
    fs.rmSync(file('dist'), { recursive: true });
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    expect(built()).toContain('"fixed"');
    fs.rmSync(file('dist/tenantgate.mjs'));
    expect((await buildIfStale()).stderr).toMatch(COMPILING);
    expect(bundled()).toContain('"fixed"');
  });
});
