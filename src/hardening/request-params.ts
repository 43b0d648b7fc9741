import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { badRequest, limitExceeded } from '../errors.ts';

const isWellFormed = (text: string): boolean => (text as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Why variables are not valid, or undefined. Iterative, so no nesting can overflow the stack here;
 * past `maxDepth` the request is refused, because code further on (JSON.stringify of a module
 * config, for one) recurses. Lone surrogates are refused because SQLite cannot store them: they
 * would come back as different characters from the ones that were sent.
 */
export function checkVariables(variables: unknown, maxDepth: number): GraphQLError | undefined {
  if (variables === null || typeof variables !== 'object') return undefined;
  const stack: Array<[unknown, number]> = [[variables, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value === 'string') {
      if (!isWellFormed(value)) return badRequest('Variables must be valid Unicode (a string holds a lone surrogate)');
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth > maxDepth) {
      return limitExceeded('variableDepth', `Variables nesting limit of ${maxDepth} exceeded`, 400);
    }
    if (Array.isArray(value)) {
      for (const item of value) stack.push([item, depth + 1]);
    } else {
      for (const key in value) {
        if (!isWellFormed(key)) return badRequest('Variables must be valid Unicode (a key holds a lone surrogate)');
        stack.push([(value as Record<string, unknown>)[key], depth + 1]);
      }
    }
  }
  return undefined;
}

/**
 * Request parameters as the resolvers may assume them:
 * - GET query strings and form bodies with `variables` or `extensions` that are not JSON answer
 *   400 (Yoga 5.24 lets the SyntaxError through, which surfaces as a masked 500);
 * - variables nested deeper than `maxVariableDepth`, or holding ill-formed Unicode, answer 400
 *   before anything executes.
 */
export function useRequestParams(maxVariableDepth: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser }) {
      if (requestParser === undefined) return;
      const contentType = request.headers.get('content-type');
      if (request.method !== 'GET' && !contentType?.startsWith('application/x-www-form-urlencoded')) return;
      const parse = requestParser;
      setRequestParser(async (req) => {
        try {
          return await parse(req);
        } catch (error) {
          if (error instanceof GraphQLError) throw error;
          throw badRequest('Request parameters are not valid: variables and extensions must be JSON objects');
        }
      });
    },
    onParams({ params }) {
      const error = checkVariables(params.variables, maxVariableDepth);
      if (error) throw error;
    },
  };
}
