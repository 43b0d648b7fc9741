import { blockFieldSuggestionsPlugin } from '@escape.tech/graphql-armor-block-field-suggestions';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import type { GraphQLError, ValidationContext } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Limits } from '../config.ts';
import { limitExceeded, type OperationLimit } from '../errors.ts';

/**
 * Armor reports a limit as a GraphQLError without a code, prefixed "Syntax Error: ". We replace it
 * with LIMIT_EXCEEDED naming the limit. Validation limits report through the validation context
 * (so the operation fails validation and nothing executes); the token limit runs inside the
 * parser, where throwing is the only way to stop.
 */
function rejectWith(limit: OperationLimit) {
  return (context: ValidationContext | null, error: GraphQLError) => {
    const coded = limitExceeded(limit, error.message.replace(/^Syntax Error: /, ''));
    if (context === null) throw coded;
    context.reportError(coded);
  };
}

function armorOptions(limit: OperationLimit) {
  return { exposeLimits: true, onReject: [rejectWith(limit)], propagateOnRejection: false };
}

// "Did you mean ..." in any form graphql-js 16 writes it. Armor 3.0.1 masks only `Did you mean
// "x"?`, which misses `Did you mean the enum value "X"?` and the suggestions in variable errors,
// which come from execution, not validation.
const SUGGESTION = /\s*Did you mean [^?]*\?/g;

export function stripSuggestions(errors: readonly Error[] | undefined): void {
  if (!errors) return;
  for (const error of errors) {
    if (error.message.includes('Did you mean')) error.message = error.message.replace(SUGGESTION, '');
  }
}

/**
 * Hides schema hints in validation error messages (Armor's plugin); the answers' other errors go
 * through stripSuggestions, from the error sanitizer (request-echo.ts), on every path.
 */
export function useNoSuggestions(): Plugin[] {
  return [blockFieldSuggestionsPlugin({ mask: '' })];
}

/**
 * Depth, alias, token, directive and cost limits (GraphQL Armor), from TENANTGATE_MAX_*.
 * Introspection is exempt from depth and cost (Armor's default) so GraphiQL works where it is on.
 */
export function useOperationLimits(limits: Limits): Plugin[] {
  return [
    maxTokensPlugin({ n: limits.maxTokens, ...armorOptions('tokens') }),
    maxDepthPlugin({ n: limits.maxDepth, ...armorOptions('depth') }),
    maxAliasesPlugin({ n: limits.maxAliases, ...armorOptions('aliases') }),
    maxDirectivesPlugin({ n: limits.maxDirectives, ...armorOptions('directives') }),
    costLimitPlugin({ maxCost: limits.maxCost, ...armorOptions('cost') }),
  ] as Plugin[];
}
