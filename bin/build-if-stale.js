#!/usr/bin/env node
// `npm start`'s prestart: compiles src/ into dist/ (tsc -p tsconfig.build.json, which also
// type-checks) and bundles it into dist/tenantgate.mjs (bin/bundle.js, esbuild), which is what
// `npm start` runs, only when dist/ is missing or older than its inputs; then the same for the
// operator dashboard (bin/build-dashboard.js, Vite: dashboard/ into dist/dashboard). tsc takes
// 5-8 s here, and 1.8 s even with --incremental on an unchanged tree; this check takes a few
// milliseconds and loads nothing from node_modules. `--force` (npm run build) builds whatever the
// stamps say; `--dashboard` checks (and builds) the dashboard alone, as the tests' globalSetup does.
//
// Each part's inputs have a fingerprint (path, size and mtime of every file), written to its
// stamp after a successful build. The server: every file under src/, the tsconfig files,
// package.json, package-lock.json (the bundle holds the dependencies), bin/bundle.js and its stand-in bin/unused-fast-json-stringify.js, stamped
// in dist/.build-stamp. The dashboard: every file under dashboard/, package-lock.json and
// bin/build-dashboard.js, stamped in dist/.dashboard-stamp. Any difference rebuilds: an edited,
// added or deleted file, or one whose mtime went backwards (a checkout of an older commit, a
// restored copy).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE, bundle } from './bundle.js';
import { DASHBOARD_OUT, buildDashboard } from './build-dashboard.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STAMP = path.join(ROOT, 'dist', '.build-stamp');
const OUTPUTS = [path.join(ROOT, 'dist', 'src', 'main.js'), path.join(ROOT, BUNDLE)];
const FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json', 'bin/bundle.js', 'bin/unused-fast-json-stringify.js'];

const DASHBOARD_STAMP = path.join(ROOT, 'dist', '.dashboard-stamp');
const DASHBOARD_OUTPUTS = [path.join(ROOT, DASHBOARD_OUT, 'index.html')];
const DASHBOARD_FILES = ['package-lock.json', 'bin/build-dashboard.js'];
/** Held while the dashboard builds: test runs and starts in one checkout may ask at once. */
const DASHBOARD_LOCK = path.join(ROOT, 'dist', '.dashboard-lock');

function* walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules') continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

function fingerprint(dirs, files) {
  const hash = createHash('sha256');
  const inputs = [...dirs.flatMap((dir) => [...walk(path.join(ROOT, dir))]), ...files.map((f) => path.join(ROOT, f))].sort();
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

function readStamp(stamp) {
  try {
    return fs.readFileSync(stamp, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const force = process.argv.includes('--force');
const fresh = (stamp, print, outputs) => !force && readStamp(stamp) === print && outputs.every((file) => fs.existsSync(file));

function buildServer() {
  const before = fingerprint(['src'], FILES);
  if (fresh(STAMP, before, OUTPUTS)) return;
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
  return bundle(ROOT).then(
    // Fingerprinted as they were when tsc started: a file edited during the build rebuilds next time.
    () => fs.writeFileSync(STAMP, `${before}\n`),
    () => {
      process.stderr.write(`tenantgate: build failed (bundling ${BUNDLE} with esbuild); see the errors above\n`);
      process.exit(1);
    },
  );
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Takes the dashboard's build lock, waiting for another process's build; a dead holder's lock is taken over. */
async function lockDashboard() {
  fs.mkdirSync(path.dirname(DASHBOARD_LOCK), { recursive: true });
  for (let waited = 0; ; waited += 100) {
    try {
      fs.mkdirSync(DASHBOARD_LOCK);
      fs.writeFileSync(path.join(DASHBOARD_LOCK, 'pid'), String(process.pid));
      return () => fs.rmSync(DASHBOARD_LOCK, { recursive: true, force: true });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    const holder = Number(readStamp(path.join(DASHBOARD_LOCK, 'pid')));
    let alive = true;
    try {
      if (holder > 0) process.kill(holder, 0);
    } catch (error) {
      alive = error.code !== 'ESRCH';
    }
    // A lock without a pid is one being taken this moment; a dead holder's, or one held for
    // longer than any build takes, is left over from a killed process.
    if ((holder > 0 && !alive) || waited > 120_000) fs.rmSync(DASHBOARD_LOCK, { recursive: true, force: true });
    await sleep(100);
  }
}

async function buildDashboardIfStale() {
  // A tree without the dashboard's sources (the start-up test's small project) has none to build.
  if (!fs.existsSync(path.join(ROOT, 'dashboard'))) return;
  if (fresh(DASHBOARD_STAMP, fingerprint(['dashboard'], DASHBOARD_FILES), DASHBOARD_OUTPUTS)) return;
  const unlock = await lockDashboard();
  try {
    // Another process may have built it while this one waited for the lock.
    const before = fingerprint(['dashboard'], DASHBOARD_FILES);
    if (readStamp(DASHBOARD_STAMP) === before && DASHBOARD_OUTPUTS.every((file) => fs.existsSync(file)) && !force) return;
    fs.rmSync(DASHBOARD_STAMP, { force: true });
    process.stderr.write(`tenantgate: building the dashboard (dashboard/ with Vite into ${DASHBOARD_OUT})\n`);
    try {
      await buildDashboard(ROOT);
    } catch (error) {
      process.stderr.write(`tenantgate: build failed (the dashboard, with Vite): ${error instanceof Error ? error.message : error}\n`);
      process.exitCode = 1;
      return;
    }
    fs.writeFileSync(DASHBOARD_STAMP, `${before}\n`);
  } finally {
    unlock();
  }
}

if (!process.argv.includes('--dashboard')) await buildServer();
await buildDashboardIfStale();
