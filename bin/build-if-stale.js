#!/usr/bin/env node
// `npm start`'s prestart: compiles src/ into dist/ (tsc -p tsconfig.build.json, which also
// type-checks) and bundles it into dist/tenantgate.mjs (bin/bundle.js, esbuild), which is what
// `npm start` runs, only when dist/ is missing or older than its inputs. tsc takes 5-8 s here, and
// 1.8 s even with --incremental on an unchanged tree; this check takes a few milliseconds and loads
// nothing from node_modules. `--force` (npm run build) builds whatever the stamp says.
//
// The inputs' fingerprint (path, size and mtime of every file under src/, of the tsconfig files,
// package.json, package-lock.json (the bundle holds the dependencies) and bin/bundle.js) is
// written to dist/.build-stamp after a successful build. Any difference rebuilds: an edited, added
// or deleted file, or one whose mtime went backwards (a checkout of an older commit, a restored copy).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE, bundle } from './bundle.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STAMP = path.join(ROOT, 'dist', '.build-stamp');
const OUTPUTS = [path.join(ROOT, 'dist', 'src', 'main.js'), path.join(ROOT, BUNDLE)];
const FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json', 'bin/bundle.js'];

function* walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

function fingerprint() {
  const hash = createHash('sha256');
  const inputs = [...walk(path.join(ROOT, 'src')), ...FILES.map((f) => path.join(ROOT, f))].sort();
  for (const file of inputs) {
    let line = `${path.relative(ROOT, file)} missing`;
    try {
      const stat = fs.statSync(file);
      line = `${path.relative(ROOT, file)} ${stat.size} ${stat.mtimeMs}`;
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    hash.update(`${line}\n`);
  }
  return hash.digest('hex');
}

function readStamp() {
  try {
    return fs.readFileSync(STAMP, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const before = fingerprint();
const force = process.argv.includes('--force');
if (!force && readStamp() === before && OUTPUTS.every((file) => fs.existsSync(file))) process.exit(0);

// The stamp goes first, so a build that fails or is interrupted leaves none and the next start retries.
fs.rmSync(STAMP, { force: true });
process.stderr.write(`tenantgate: compiling src/ into dist/ (tsc -p tsconfig.build.json, then esbuild into ${BUNDLE})\n`);
try {
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
} catch {
  process.stderr.write('tenantgate: build failed (tsc -p tsconfig.build.json); see the errors above\n');
  process.exit(1);
}
try {
  await bundle(ROOT);
} catch {
  process.stderr.write(`tenantgate: build failed (bundling ${BUNDLE} with esbuild); see the errors above\n`);
  process.exit(1);
}
// Fingerprinted as they were when tsc started: a file edited during the build rebuilds next time.
fs.writeFileSync(STAMP, `${before}\n`);
