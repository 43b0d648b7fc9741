import { Kind, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import { CLIENT_ERROR_CODES } from '../errors.ts';
import type { OperationMeta } from '../pipeline/exchange.ts';

/**
 * The bounded vocabularies of the request log and metrics: outcomes and operation labels. No
 * label ever holds an org, a key or anything a client chose, so the number of series does not
 * grow with tenants or traffic.
 */

/** Error codes clients can see become `outcome` as they are (lower-cased); any other code is `other`. */
const OUTCOMES: ReadonlyMap<string, string> = new Map(
  CLIENT_ERROR_CODES.map((code) => [code, code === 'INTERNAL_SERVER_ERROR' ? 'internal' : code.toLowerCase()]),
);

export function outcomeOf(status: number, code: string | undefined, errors: boolean): string {
  if (code !== undefined) return OUTCOMES.get(code) ?? 'other';
  if (status >= 500) return 'internal';
  if (status >= 400 || errors) return status === 405 ? 'method_not_allowed' : status === 415 ? 'unsupported_media_type' : 'bad_request';
  return 'ok';
}

const MAX_NAME = 100;

/**
 * The operation label: the single root field an operation selects (`modules`, `installModule`:
 * the names the API contract and dashboards use), `introspection`, `multiple` when it selects
 * several, `none` when there is no operation to run, `other` when the field is not in the schema.
 * Client-chosen operation names are never labels: they are unbounded.
 */
export function operationLabel(operation: OperationDefinitionNode | null | undefined, rootFields: ReadonlySet<string>): string {
  if (!operation) return 'none';
  let field: string | undefined;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) return 'multiple';
    const name = selection.name.value;
    if (name === '__typename') continue;
    if (field !== undefined && field !== name) return 'multiple';
    field = name;
  }
  if (field === undefined) return '__typename';
  if (field === '__schema' || field === '__type') return 'introspection';
  return rootFields.has(field) ? field : 'other';
}

/** The label and the client's (truncated) operation name. */
export function operationMeta(operation: OperationDefinitionNode | null | undefined, rootFields: ReadonlySet<string>): OperationMeta {
  const name = operation?.name?.value;
  return {
    operation: operationLabel(operation, rootFields),
    operationName: name === undefined ? null : name.length > MAX_NAME ? `${name.slice(0, MAX_NAME)}…` : name,
  };
}

export function rootFieldsOf(schema: GraphQLSchema): Set<string> {
  const names = new Set<string>();
  for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (type) for (const name of Object.keys(type.getFields())) names.add(name);
  }
  return names;
}
