import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A dialect's folder of drizzle migrations (drizzle/sqlite, drizzle/pg), found upwards from the
 * calling module: src/ under tsx, dist/src/ when compiled, dist/ when bundled.
 */
export function findMigrations(dialect: 'sqlite' | 'pg', from: string): string {
  for (let dir = path.dirname(fileURLToPath(from)); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'drizzle', dialect);
    if (fs.existsSync(path.join(candidate, 'meta', '_journal.json'))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`drizzle/${dialect} migrations not found above ${from}`);
  }
}
