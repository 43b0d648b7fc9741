import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import {
  BREAK,
  getOperationAST,
  getVariableValues,
  Kind,
  validate,
  visit,
  type ArgumentNode,
  type DocumentNode,
  type GraphQLError,
  type GraphQLSchema,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { limitExceeded } from '../errors.ts';
import { MAX_PAGE } from '../graphql/modules.ts';

const PAGE_ARGUMENTS: ReadonlySet<string> = new Set(['first', 'last']);

/** Whether the document passes a variable as `first` or `last` anywhere (kept per document). */
function pagesByVariable(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    Argument(node) {
      if (PAGE_ARGUMENTS.has(node.name.value) && node.value.kind === Kind.VARIABLE) {
        found = true;
        return BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/** The document with each `first: $n` / `last: $n` written as the page it asks for. */
function withPagesWritten(document: DocumentNode, values: Record<string, unknown>): DocumentNode {
  return visit(document, {
    Argument(node): ArgumentNode | undefined {
      if (!PAGE_ARGUMENTS.has(node.name.value) || node.value.kind !== Kind.VARIABLE) return undefined;
      const value = values[node.value.name.value];
      // No value (null, or not given): the page cannot be known here, so count the largest one.
      const page = typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : MAX_PAGE;
      return { ...node, value: { kind: Kind.INT, value: String(page) } };
    },
  });
}

/**
 * GraphQL Armor's cost limit (2.4.3) reads `first` and `last` only when they are written in the
 * document, so `modules(first: $n)` counted as a page of one. At execution, where the variables
 * are known and coerced, an operation that pages by a variable is costed again by Armor's own
 * rule over the document with the variables' values written in (the largest page, 100, where a
 * value is null or missing), and refused with the same LIMIT_EXCEEDED answer validation gives,
 * before anything runs. Operations without such variables are left to validation.
 */
export function useVariableCost(maxCost: number): Plugin {
  const paging = new WeakMap<DocumentNode, boolean>();
  const costOver = (schema: GraphQLSchema, document: DocumentNode): GraphQLError | undefined => {
    let refusal: GraphQLError | undefined;
    const rule = costLimitRule({
      maxCost,
      exposeLimits: true,
      propagateOnRejection: false,
      onReject: [(_context, error) => void (refusal ??= error)],
    });
    validate(schema, document, [rule]);
    return refusal;
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const { document } = args;
      let pages = paging.get(document);
      if (pages === undefined) {
        pages = pagesByVariable(document);
        paging.set(document, pages);
      }
      if (!pages) return;
      const operation = getOperationAST(document, args.operationName);
      if (!operation) return;
      const coerced = getVariableValues(args.schema, operation.variableDefinitions ?? [], args.variableValues ?? {}, { maxErrors: 1 });
      // Variables that do not coerce fail execution on their own, with nothing run.
      if (coerced.errors) return;
      const refusal = costOver(args.schema, withPagesWritten(document, coerced.coerced));
      if (!refusal) return;
      const error = limitExceeded('cost', refusal.message.replace(/^Syntax Error: /, ''));
      // As validation errors are: 400 for application/graphql-response+json, 200 for application/json.
      (error.extensions as Record<string, unknown>).http = { spec: true, status: 400 };
      setResultAndStopExecution({ errors: [error] });
    },
  };
}
