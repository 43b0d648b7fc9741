import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { printSortedSchema, schema } from '../src/graphql/schema.ts';
import { isObjectType } from 'graphql';

describe('schema.graphql', () => {
  it('matches the Pothos schema (run `npm run schema` after changing the schema)', () => {
    const committed = fs.readFileSync(new URL('../schema.graphql', import.meta.url), 'utf8');
    expect(committed, 'schema.graphql is stale: run `npm run schema` and commit it').toBe(printSortedSchema());
  });

  it('describes every public type and root field', () => {
    const missing: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (type.name.startsWith('__') || ['String', 'Boolean', 'Int', 'Float', 'ID'].includes(type.name)) continue;
      if (!type.description) missing.push(type.name);
    }
    for (const root of [schema.getQueryType(), schema.getMutationType()]) {
      if (!isObjectType(root)) continue;
      for (const field of Object.values(root.getFields())) if (!field.description) missing.push(`${root.name}.${field.name}`);
    }
    expect(missing).toEqual([]);
  });
});
