import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { printSortedSchema } from './graphql/schema.ts';

export const SCHEMA_FILE = fileURLToPath(new URL('../schema.graphql', import.meta.url));

fs.writeFileSync(SCHEMA_FILE, printSortedSchema());
console.log(`wrote ${SCHEMA_FILE}`);
