import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SETTING_NAMES, environment, settingInfo, type SettingName } from '../src/config.ts';

const ROOT = path.resolve(new URL('..', import.meta.url).pathname);
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The rows of the README's Configuration table: variable -> default cell. */
function configurationTable(): Map<string, string> {
  const section = README.split(/^## /m).find((part) => part.startsWith('Configuration\n'));
  if (!section) throw new Error('README.md has no "## Configuration" section');
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const row = /^\| `(TENANTGATE_[A-Z0-9_]+)` \| (.*?) \| .* \|$/.exec(line);
    if (row) rows.set(row[1]!, row[2]!);
  }
  return rows;
}

/** Every TENANTGATE_ name a file mentions, except the `TENANTGATE_MAX_*` family name. */
function mentioned(text: string): Set<string> {
  return new Set([...text.matchAll(/TENANTGATE_[A-Z0-9_]*[A-Z0-9]\b(?!_?\*)/g)].map((m) => m[0]));
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(file) : file.endsWith('.ts') ? [file] : [];
  });
}

describe("README's Configuration table", () => {
  const table = configurationTable();

  it('lists every setting, and only settings', () => {
    const settings = new Set<string>(SETTING_NAMES);
    expect([...table.keys()].filter((name) => !settings.has(name)), 'rows for variables tenantgate does not read').toEqual([]);
    expect(SETTING_NAMES.filter((name) => !table.has(name)), 'settings without a row').toEqual([]);
  });

  it('gives the default each setting has', () => {
    const wrong: string[] = [];
    for (const name of SETTING_NAMES) {
      const fallback = settingInfo.get(environment.shape[name])?.default;
      const cell = table.get(name);
      if (fallback !== undefined && cell !== undefined && cell !== `\`${fallback}\``) wrong.push(`${name}: ${cell}, not \`${fallback}\``);
    }
    expect(wrong).toEqual([]);
  });

  it('is where every variable named in the README or the code is a setting', () => {
    const settings = new Set<string>(SETTING_NAMES);
    const named = new Map<string, string>();
    for (const name of mentioned(README)) named.set(name, 'README.md');
    for (const file of sourceFiles(path.join(ROOT, 'src'))) {
      for (const name of mentioned(fs.readFileSync(file, 'utf8'))) named.set(name, path.relative(ROOT, file));
    }
    expect(named.size).toBeGreaterThan(10);
    expect([...named].filter(([name]) => !settings.has(name as SettingName)).map(([name, file]) => `${name} in ${file}`)).toEqual([]);
  });
});
