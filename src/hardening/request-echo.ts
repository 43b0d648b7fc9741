import {
  GraphQLError,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  Lexer,
  Source,
  TokenKind,
  type GraphQLSchema,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * Errors about a request never repeat what the client sent (a secret pasted into the wrong place
 * would come back, and land in the client's logs and anything in between):
 * - Yoga 5.24 answers a body that is not JSON with `extensions.originalError` holding V8's
 *   message, which quotes the body, all of it; that message is replaced;
 * - graphql-js 16 syntax errors quote the token they stopped at (`found String "ghp_..."`); the
 *   token's kind stays, its text goes;
 * - validation and variable errors keep the names the schema defines and the names of the
 *   operation's variables; any other quoted name (an unknown field, type, argument or directive,
 *   an alias, a fragment or operation name) becomes "…". The location still points at it.
 * Last, as a net under those rules: a request error whose message still holds a string, number,
 * name or comment of the document (4 characters or more, not a schema name), or a string of the
 * variables, is answered with a message that says only what kind of error it is.
 */

const WITHHELD = '"…"';
/** Words of the language, which messages use too ("Cannot query field"). */
const KEYWORDS: ReadonlySet<string> = new Set(['query', 'mutation', 'subscription', 'fragment', 'true', 'false', 'null']);
const MIN_ECHO = 4;

/** Every name the schema defines: types, fields, arguments, input fields, enum values, directives. */
function schemaNames(schema: GraphQLSchema): Set<string> {
  const names = new Set<string>(['__typename', '__schema', '__type', 'schema', 'type']);
  for (const type of Object.values(schema.getTypeMap())) {
    names.add(type.name);
    if (isObjectType(type) || isInterfaceType(type)) {
      for (const field of Object.values(type.getFields())) {
        names.add(field.name);
        for (const arg of field.args) names.add(arg.name);
      }
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) names.add(field.name);
    } else if (isEnumType(type)) {
      for (const value of type.getValues()) names.add(value.name);
    }
  }
  for (const directive of schema.getDirectives()) {
    names.add(`@${directive.name}`);
    for (const arg of directive.args) names.add(arg.name);
  }
  return names;
}

interface Sent {
  /** Text of the document and variables that must not come back. */
  echoes: string[];
  /** Names the operation declares for its variables (`$name` without the `$`). */
  variables: Set<string>;
}

/** What the client wrote, from the query text (lexed as far as it lexes) and the variables. */
function sentBy(query: string | undefined, variables: unknown, names: ReadonlySet<string>): Sent {
  const echoes: string[] = [];
  const declared = new Set<string>();
  const add = (text: string) => {
    if (text.length >= MIN_ECHO && !names.has(text) && !KEYWORDS.has(text)) echoes.push(text);
  };
  if (typeof query === 'string') {
    const lexer = new Lexer(new Source(query));
    let afterDollar = false;
    try {
      for (let token = lexer.advance(); token.kind !== TokenKind.EOF; token = lexer.advance()) {
        if (token.kind === TokenKind.NAME && afterDollar) declared.add(token.value);
        else if (token.value !== undefined) add(token.value);
        afterDollar = token.kind === TokenKind.DOLLAR;
      }
    } catch {
      // A syntax error: what was lexed before it is what the message can quote.
    }
    // Comments are skipped by advance(); the part of the text the lexer did not reach may be quoted too.
    for (const comment of query.matchAll(/#[^\r\n]*/g)) add(comment[0].slice(1).trim());
  }
  const stack: unknown[] = [variables];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'string') add(value);
    else if (Array.isArray(value)) stack.push(...value);
    else if (value !== null && typeof value === 'object') stack.push(...Object.values(value));
  }
  return { echoes, variables: declared };
}

/** Parse errors: the token's kind stays, the client's text goes. */
function rewriteSyntaxError(message: string): string {
  return message
    .replace(/^(Syntax Error: .*?(?:found|Unexpected) (?:Name|Int|Float|String|BlockString|Comment)) ".*"\.$/s, '$1.')
    .replace(/^(Syntax Error: [^"]*?): (?:".*"|U\+[0-9A-F]{4,6})\.$/s, '$1.');
}

/** Validation and variable errors: quoted names the schema or the operation's variables do not define become "…". */
function rewriteNames(message: string, names: ReadonlySet<string>, variables: ReadonlySet<string>): string {
  return message.replace(/"([^"]*)"/g, (quoted, inner: string) => {
    if (inner.startsWith('$') && variables.has(inner.slice(1))) return quoted;
    const parts = inner.replace(/[[\]!]/g, '').split('.');
    const known = parts.every((part, i) => names.has(part) || /^\d+$/.test(part) || (i === 0 && variables.has(part)));
    return known && inner !== '' ? quoted : WITHHELD;
  });
}

const UNEXPECTED_PARAMETER = /^Unexpected parameter ".*" in the request body\.$/s;

/** The codes of errors whose messages graphql-js or Yoga wrote (ours never hold a request's text). */
const FALLBACK: Record<string, string> = {
  BAD_REQUEST: 'The request is not valid',
  GRAPHQL_PARSE_FAILED: 'Syntax Error: the document is not valid GraphQL here',
  GRAPHQL_VALIDATION_FAILED: 'The document is not valid for this schema here',
  BAD_USER_INPUT: 'A value in the request is not valid for its type',
};

export function withoutEchoes(errors: readonly Error[], sent: () => Sent, names: ReadonlySet<string>): void {
  let known: Sent | undefined;
  for (const error of errors) {
    if (!(error instanceof GraphQLError) || error.path !== undefined) continue;
    const extensions = error.extensions as Record<string, unknown>;
    const original = extensions.originalError as { name?: unknown } | undefined;
    // Kept, name and all: Yoga answers 400 rather than 200 to application/json because it is there.
    if (original && !(original instanceof GraphQLError)) {
      extensions.originalError = { name: original.name, message: 'not shown: it would repeat the request' };
    }
    const code = extensions.code;
    known ??= sent();
    // Yoga names an unknown body parameter, which is the client's own text (a key pasted there).
    if (UNEXPECTED_PARAMETER.test(error.message)) error.message = 'Unexpected parameter in the request body: only query, variables, operationName and extensions are taken';
    if (code === 'GRAPHQL_PARSE_FAILED') error.message = rewriteSyntaxError(error.message);
    else if (code === 'GRAPHQL_VALIDATION_FAILED' || code === 'BAD_USER_INPUT') error.message = rewriteNames(error.message, names, known.variables);
    const fallback = FALLBACK[String(code)];
    if (fallback && known.echoes.some((echo) => error.message.includes(echo))) error.message = fallback;
  }
}

/** The request parameters an answer's errors are checked against. */
export interface SentParams {
  query?: unknown;
  variables?: unknown;
}

/**
 * Takes out of an answer's errors anything the client sent (see withoutEchoes), and the schema
 * hints and values graphql-js puts in them (operation-limits.ts, variable-errors.ts). Every path
 * calls it on every answer with errors, just before it is written: the listener itself, Yoga's
 * path through useSafeErrors.
 */
export function createErrorSanitizer(schema: GraphQLSchema, others: ReadonlyArray<(errors: readonly Error[]) => void>) {
  const names = schemaNames(schema);
  return (errors: readonly Error[] | undefined, sent: SentParams | undefined): void => {
    if (!errors || errors.length === 0) return;
    for (const other of others) other(errors);
    const query = typeof sent?.query === 'string' ? sent.query : undefined;
    withoutEchoes(errors, () => sentBy(query, sent?.variables, names), names);
  };
}

/** The sanitizer on Yoga's path: Yoga keeps the parameters it parsed on the server context. */
export function useSafeErrors(sanitize: ReturnType<typeof createErrorSanitizer>): Plugin {
  return {
    onResultProcess({ result, serverContext }) {
      if (Array.isArray(result)) return;
      const errors = (result as { errors?: readonly Error[] }).errors;
      sanitize(errors, (serverContext as { params?: SentParams }).params);
    },
  };
}
