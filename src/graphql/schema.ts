import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.ts';
import './orgs.ts';
import './keys.ts';
import './modules.ts';
import './credentials.ts';
import './system.ts';
import './usage.ts';
import './audit.ts';
import './events.ts';

export const schema: GraphQLSchema = builder.toSchema();

/** The committed schema.graphql: sorted, so that its diff shows only real changes. */
export function printSortedSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
