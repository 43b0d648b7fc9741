import {
  getOperationAST,
  getVariableValues,
  GraphQLError,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type SelectionSetNode,
  type ExecutionArgs,
  type ExecutionResult,
  type OperationDefinitionNode,
  type Source,
  valueFromASTUntyped,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../logger.ts';

export interface CompiledExecutionOptions {
  logger: Logger;
  /**
   * How many times an operation executes interpreted before it is compiled; 0 compiles it on its
   * first execution. Compiling costs as much as several executions (1 ms for a page of modules,
   * 12 ms for the largest document the limits let through), so a document sent once or a few
   * times (an attacker's one-off, a developer's experiment) is never compiled, and compiling never
   * costs more than a share of the executions that earned it.
   */
  compileAfter: number;
  /** Called once per query or mutation executed, with the engine that runs it. */
  onExecuted?: (engine: 'compiled' | 'interpreted') => void;
}

/**
 * What the compiled operations may hold, estimated: a compiled operation takes about 2 KB of heap
 * per field it selects (fragments expanded) and 16 KB besides (measured with graphql-jit 0.8.9: a
 * page of modules 54 KB, fifteen aliased full pages 559 KB). The least recently run go first.
 */
const COMPILED_BUDGET_BYTES = 4 * 1024 * 1024;
const BYTES_PER_FIELD = 2 * 1024;
const BYTES_PER_OPERATION = 16 * 1024;

/** One operation of a parsed document: how often it ran, and its compiled form once there is one. */
interface Entry {
  runs: number;
  compiled: CompiledQuery | undefined;
  /** Its estimated size while compiled. */
  bytes: number;
  /** Never compiled: compilation failed (logged once), or it is introspection. */
  interpretedOnly: boolean;
}

/**
 * Compiled execution (graphql-jit): an operation that keeps coming back runs as a function
 * generated for its selection set, not through graphql-js's interpreter. The answers are the
 * interpreter's: variables are checked by graphql-js first (a value it refuses is answered by the
 * interpreter, with its messages), field errors carry their locations as graphql-js's do, and
 * subscriptions and introspection always run interpreted. One difference stays: a compiled
 * operation answers its fields in selection order, which is the order the GraphQL spec asks for;
 * the interpreter Yoga uses puts synchronous fields before asynchronous ones.
 *
 * Run counts are kept per parsed document, so they live as long as Yoga's parse cache keeps it;
 * compiled operations are kept within COMPILED_BUDGET_BYTES, the least recently run dropped first
 * (it is interpreted again, and compiled again once it has come back as often).
 */
export function useCompiledExecution({ logger, compileAfter, onExecuted }: CompiledExecutionOptions): Plugin {
  const byDocument = new WeakMap<DocumentNode, Map<string | undefined, Entry>>();
  /** The compiled entries, least recently run first. */
  const kept = new Set<Entry>();
  let keptBytes = 0;

  const entryFor = (document: DocumentNode, operationName: string | undefined, operation: OperationDefinitionNode): Entry => {
    let operations = byDocument.get(document);
    if (!operations) {
      operations = new Map();
      byDocument.set(document, operations);
    }
    let entry = operations.get(operationName);
    if (!entry) {
      entry = { runs: 0, compiled: undefined, bytes: 0, interpretedOnly: isIntrospection(operation) };
      operations.set(operationName, entry);
    }
    return entry;
  };

  const keep = (entry: Entry, compiled: CompiledQuery, bytes: number) => {
    for (const oldest of kept) {
      if (keptBytes + bytes <= COMPILED_BUDGET_BYTES) break;
      kept.delete(oldest);
      keptBytes -= oldest.bytes;
      oldest.compiled = undefined;
      oldest.runs = 0;
    }
    entry.compiled = compiled;
    entry.bytes = bytes;
    kept.add(entry);
    keptBytes += bytes;
  };

  const compile = (args: ExecutionArgs, operation: OperationDefinitionNode, entry: Entry): CompiledQuery | undefined => {
    const compiled = compileQuery(args.schema, args.document, args.operationName ?? undefined, {
      // The interpreter's errors carry no stack either once masked; capturing one per error is waste.
      disablingCapturingStackErrors: true,
      useExperimentalPathBasedSkipInclude: true,
    });
    if (isCompiledQuery(compiled)) {
      keep(entry, compiled, BYTES_PER_OPERATION + BYTES_PER_FIELD * fieldsOf(args.document, operation));
      return compiled;
    }
    entry.interpretedOnly = true;
    // Not even the messages: they may quote the document, literal arguments (a secret) and all.
    logger.warn('operation not compiled; it runs interpreted', { errors: compiled.errors?.length ?? 0 });
    return undefined;
  };

  /** The compiled operation, bound to this execution's variables; undefined when it stays interpreted. */
  const compiledFor = (args: ExecutionArgs, operation: OperationDefinitionNode) => {
    const entry = entryFor(args.document, args.operationName ?? undefined, operation);
    if (entry.interpretedOnly || ++entry.runs <= compileAfter) return undefined;
    // graphql-js decides what a variable means and what is wrong with it: graphql-jit words its
    // refusals differently, and the gateway's rewriting of those messages knows graphql-js's.
    const variables = variablesFor(args, operation);
    if (!variables) return undefined;
    let compiled = entry.compiled;
    if (compiled) {
      // Most recently run last.
      kept.delete(entry);
      kept.add(entry);
    } else {
      compiled = compile(args, operation, entry);
      if (!compiled) return undefined;
    }
    const query = compiled.query;
    return (root: unknown, context: unknown) => query(root, context, variables);
  };

  return {
    onExecute({ args, setExecuteFn }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (!operation || operation.operation === 'subscription') return;
      const run = compiledFor(args, operation);
      if (!run) {
        onExecuted?.('interpreted');
        return;
      }
      onExecuted?.('compiled');
      setExecuteFn((execArgs) => withLocatedErrors(run(execArgs.rootValue, execArgs.contextValue), execArgs.document));
    },
  };
}

/**
 * GraphiQL's schema query and its kin: run rarely, and the costliest documents to compile (the
 * introspection query: 24 ms against 11 ms interpreted). Root fields named directly are checked.
 */
function isIntrospection(operation: OperationDefinitionNode): boolean {
  return operation.selectionSet.selections.some((s) => s.kind === Kind.FIELD && (s.name.value === '__schema' || s.name.value === '__type'));
}

/** Fields the operation selects, every fragment spread counted as often as it is spread. */
function fieldsOf(document: DocumentNode, operation: OperationDefinitionNode): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const counted = new Map<string, number>();
  const count = (set: SelectionSetNode, visiting: Set<string>): number => {
    let fields = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) fields += 1 + (selection.selectionSet ? count(selection.selectionSet, visiting) : 0);
      else if (selection.kind === Kind.INLINE_FRAGMENT) fields += count(selection.selectionSet, visiting);
      else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        // A cycle cannot pass validation; guarded all the same.
        if (!fragment || visiting.has(name)) continue;
        let inFragment = counted.get(name);
        if (inFragment === undefined) {
          visiting.add(name);
          inFragment = count(fragment.selectionSet, visiting);
          visiting.delete(name);
          counted.set(name, inFragment);
        }
        fields += inFragment;
      }
    }
    return fields;
  };
  return count(operation.selectionSet, new Set());
}

/**
 * The variables to hand to the compiled operation, or undefined when graphql-js refuses them. A
 * variable left out that has a default gets its default as a client would have written it:
 * graphql-jit 0.8.9 refuses a missing non-null variable even when it has a default.
 */
function variablesFor(args: ExecutionArgs, operation: OperationDefinitionNode): Record<string, unknown> | undefined {
  const given = (args.variableValues ?? {}) as Record<string, unknown>;
  const definitions = operation.variableDefinitions;
  if (!definitions || definitions.length === 0) return given;
  if (getVariableValues(args.schema, definitions, given, { maxErrors: 1 }).errors !== undefined) return undefined;
  let variables = given;
  for (const definition of definitions) {
    const name = definition.variable.name.value;
    if (definition.defaultValue === undefined || Object.hasOwn(given, name)) continue;
    if (variables === given) variables = { ...given };
    variables[name] = valueFromASTUntyped(definition.defaultValue);
  }
  return variables;
}

type MaybePromise<T> = T | Promise<T>;

function withLocatedErrors(result: MaybePromise<ExecutionResult>, document: DocumentNode): MaybePromise<ExecutionResult> {
  if (result instanceof Promise) return result.then((settled) => locate(settled, document));
  return locate(result, document);
}

/**
 * graphql-jit's field errors hold `locations` but no source positions, and every step that
 * rebuilds an error from its parts (Yoga's masking, its result formatting) keeps only positions:
 * they would lose their locations. They become graphql-js errors here, as the interpreter makes them.
 */
function locate(result: ExecutionResult, document: DocumentNode): ExecutionResult {
  if (!result.errors || result.errors.length === 0) return result;
  const source = document.loc?.source;
  const errors = result.errors.map((error) => {
    const locations = error.locations;
    return new GraphQLError(error.message, {
      source: source && locations ? source : undefined,
      positions: source && locations ? locations.map((l) => offsetOf(source, l.line, l.column)) : undefined,
      path: error.path,
      originalError: error.originalError ?? undefined,
      extensions: error.extensions,
    });
  });
  return { ...result, errors };
}

function offsetOf(source: Source, line: number, column: number): number {
  // Undoes graphql-js's getLocation: lines and columns count from 1, and a line ends at \r\n, \n or \r.
  const lineEnd = /\r\n|[\n\r]/g;
  let start = 0;
  for (let current = 1; current < line; current++) {
    const match = lineEnd.exec(source.body);
    if (!match) break;
    start = match.index + match[0].length;
  }
  return start + column - 1;
}

/** Counts executions when compiled execution is off (TENANTGATE_COMPILED_EXECUTION=false). */
export function useCountedExecution(onExecuted: () => void): Plugin {
  return {
    onExecute({ args }) {
      if (getOperationAST(args.document, args.operationName)?.operation !== 'subscription') onExecuted();
    },
  };
}
