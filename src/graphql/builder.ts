import SchemaBuilder from '@pothos/core';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { type AuthFailure } from '@pothos/plugin-scope-auth';
import { DateTimeResolver, JSONObjectResolver } from 'graphql-scalars';
import { SCOPES, type Scope } from '../auth/scopes.ts';
import { forbidden } from '../errors.ts';
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
builder.addScalarType('JSONObject', JSONObjectResolver);

builder.queryType({ description: 'Everything a key can read; every field is scoped to the key\'s org unless it says admin.' });
builder.mutationType({ description: 'Everything a key can change; every field is scoped to the key\'s org unless it says admin.' });
