import SchemaBuilder from '@pothos/core';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { type AuthFailure } from '@pothos/plugin-scope-auth';
import { Kind, type ValueNode } from 'graphql';
import { DateTimeResolver, JSONObjectResolver } from 'graphql-scalars';
import { SCOPES, type Scope } from '../auth/scopes.ts';
import { badInput, forbidden } from '../errors.ts';
import type { Context } from './context.ts';

/** The first scope named in a Pothos auth failure (they nest as any/all groups). */
function missingScope(failure: AuthFailure): string | undefined {
  if ('scope' in failure) return String(failure.scope);
  if ('failures' in failure) {
    for (const inner of failure.failures) {
      const scope = missingScope(inner);
      if (scope) return scope;
    }
  }
  return undefined;
}

export const builder = new SchemaBuilder<{
  Context: Context;
  AuthScopes: Record<Scope, boolean>;
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    JSONObject: { Input: Record<string, unknown>; Output: Record<string, unknown> };
  };
}>({
  plugins: [ScopeAuthPlugin, RelayPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    // A subscription's scopes are checked when it is opened (without this, only each event's
    // resolve is: the stream would be opened and held for a key that may not read it).
    authorizeOnSubscribe: true,
    authScopes: (context) => {
      const granted = {} as Record<Scope, boolean>;
      for (const scope of SCOPES) granted[scope] = context.scopes.has(scope);
      return granted;
    },
    unauthorizedError: (_parent, _context, info, result) => {
      const scope = missingScope(result.failure);
      return forbidden(`${info.parentType.name}.${info.fieldName} needs the ${scope ?? 'required'} scope, which this API key lacks`);
    },
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    nodeQueryOptions: false,
    nodesQueryOptions: false,
    pageInfoTypeOptions: { description: 'Where a page of a connection stands.' },
  },
});

builder.addScalarType('DateTime', DateTimeResolver);
function jsonKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

const literalKinds: Partial<Record<ValueNode['kind'], string>> = {
  [Kind.LIST]: 'an array',
  [Kind.STRING]: 'a string',
  [Kind.INT]: 'a number',
  [Kind.FLOAT]: 'a number',
  [Kind.BOOLEAN]: 'a boolean',
  [Kind.NULL]: 'null',
  [Kind.ENUM]: 'an enum value',
};

// graphql-scalars 2.0's JSONObject rejects non-objects with no error code and with the value in
// the message; config and secrets arrive here, so the rejection is BAD_USER_INPUT and names only
// the kind of value it got.
builder.addScalarType('JSONObject', JSONObjectResolver, {
  parseValue: (value: unknown) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw badInput(`expected a JSON object, got ${jsonKind(value)}`);
    }
    return JSONObjectResolver.parseValue(value) as Record<string, unknown>;
  },
  parseLiteral: (ast, variables) => {
    if (ast.kind !== Kind.OBJECT && ast.kind !== Kind.VARIABLE) {
      throw badInput(`expected a JSON object, got ${literalKinds[ast.kind] ?? 'something else'}`);
    }
    return JSONObjectResolver.parseLiteral(ast, variables) as Record<string, unknown>;
  },
});

builder.queryType({ description: 'Everything a key can read; every field is scoped to the key\'s org unless it says admin.' });
builder.mutationType({ description: 'Everything a key can change; every field is scoped to the key\'s org unless it says admin.' });
