import { getOperationAST, Kind, type DocumentNode, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** What a cached answer was computed for: the caller's org and the scopes its key holds. */
export interface CachePrincipal {
  orgId: string;
  scopes: ReadonlySet<string>;
}

/** What the request log and metrics say of an operation (see observability.ts). */
export interface OperationMeta {
  operation: string;
  operationName: string | null;
}

export interface ResponseCacheOptions {
  /** Characters of answers and keys kept, all orgs together; 0 turns the cache off. */
  maxBytes: number;
  /** Root fields whose answers may be kept: read-only, and reading nothing but the org's own data. */
  rootFields: ReadonlySet<string>;
  /** Changes whenever the org's data may have changed (Store.dataVersion). */
  dataVersion: (orgId: string) => string;
  principalOf: (request: Request) => CachePrincipal | undefined;
  /** The operation as the request log names it, read when an answer is stored. */
  metaOf: (request: Request) => OperationMeta | undefined;
  /** Told of every lookup of a cacheable request; `meta` only for a hit. */
  onLookup?: (request: Request, hit: boolean, meta: OperationMeta | undefined) => void;
}

export interface ResponseCache {
  plugin: Plugin;
  /** Characters held now (answers and keys). */
  readonly bytes: number;
  readonly entries: number;
}

/** Longer operation texts or variables are not looked up (a dashboard's poll is short). */
const MAX_KEYED_TEXT = 16 * 1024;

interface Entry {
  version: string;
  json: string;
  bytes: number;
  meta: OperationMeta | undefined;
}

interface Pending {
  key: string;
  version: string;
}

/**
 * An answer served from the cache. Yoga writes a result with its own `stringify` as is, so a hit
 * costs no execution and no serialisation; `data` is parsed only if something asks for it.
 */
class CachedResult {
  readonly #json: string;
  constructor(json: string) {
    this.#json = json;
  }
  get data(): unknown {
    return (JSON.parse(this.#json) as ExecutionResult).data;
  }
  readonly stringify = (): string => this.#json;
}

/**
 * Answers to read-only queries, kept per (org, scopes, operation text, operation name, variables)
 * and served while the org's data version is unchanged. Dashboards poll the same page of the
 * same org; this answers them without execution.
 *
 * Why it is exact rather than time-based: the version an answer is stored under is read before
 * it executes, and every write of that org (through this store) or any commit by another
 * connection (another process, the CLI) changes it. So a write is seen by the very next read,
 * and an answer that raced a write is never served. Authentication, rate limiting and the body
 * limit run before the lookup; the key's scopes are part of the cache key, so an answer computed
 * with one set of scopes is never served to a key with another. Only answers without errors
 * are kept, and only for operations whose every root field is in `rootFields`.
 *
 * Memory is bounded by `maxBytes` (serialised answers plus their keys); the least recently used
 * answer goes first.
 */
export function createResponseCache(options: ResponseCacheOptions): ResponseCache {
  const entries = new Map<string, Entry>();
  const pending = new WeakMap<Request, Pending>();
  const cacheable = new WeakMap<DocumentNode, Map<string, boolean>>();
  const scopeKeys = new WeakMap<ReadonlySet<string>, string>();
  let bytes = 0;

  const scopeKey = (scopes: ReadonlySet<string>): string => {
    let key = scopeKeys.get(scopes);
    if (key === undefined) scopeKeys.set(scopes, (key = [...scopes].sort().join(' ')));
    return key;
  };

  const isCacheable = (document: DocumentNode, operationName: string | null | undefined): boolean => {
    let byName = cacheable.get(document);
    if (byName === undefined) cacheable.set(document, (byName = new Map()));
    const name = operationName ?? '';
    let answer = byName.get(name);
    if (answer === undefined) {
      const operation = getOperationAST(document, operationName);
      answer =
        operation !== null &&
        operation !== undefined &&
        operation.operation === 'query' &&
        operation.selectionSet.selections.every(
          (s) => s.kind === Kind.FIELD && (s.name.value === '__typename' || options.rootFields.has(s.name.value)),
        );
      byName.set(name, answer);
    }
    return answer;
  };

  const drop = (key: string, entry: Entry) => {
    entries.delete(key);
    bytes -= entry.bytes;
  };

  const store = (key: string, entry: Entry) => {
    if (entry.bytes > options.maxBytes / 4) return;
    const old = entries.get(key);
    if (old) drop(key, old);
    entries.set(key, entry);
    bytes += entry.bytes;
    for (const [oldestKey, oldest] of entries) {
      if (bytes <= options.maxBytes) break;
      drop(oldestKey, oldest);
    }
  };

  const plugin: Plugin = {
    onParams({ params, request, setResult }) {
      if (options.maxBytes <= 0 || typeof params.query !== 'string' || params.query.length > MAX_KEYED_TEXT) return;
      const principal = options.principalOf(request);
      if (!principal) return;
      const variables = params.variables === undefined || params.variables === null ? '' : JSON.stringify(params.variables);
      if (variables.length > MAX_KEYED_TEXT) return;
      const key = `${principal.orgId}\0${scopeKey(principal.scopes)}\0${params.operationName ?? ''}\0${variables}\0${params.query}`;
      const version = options.dataVersion(principal.orgId);
      const entry = entries.get(key);
      if (entry !== undefined) {
        if (entry.version === version) {
          // Most recently used goes last; eviction takes from the front.
          entries.delete(key);
          entries.set(key, entry);
          options.onLookup?.(request, true, entry.meta);
          setResult(new CachedResult(entry.json) as unknown as ExecutionResult);
          return;
        }
        drop(key, entry);
      }
      pending.set(request, { key, version });
    },

    onExecute({ args }) {
      const request = (args.contextValue as { request?: Request }).request;
      const wanted = request && pending.get(request);
      if (!request || !wanted) return;
      pending.delete(request);
      if (!isCacheable(args.document, args.operationName)) return;
      options.onLookup?.(request, false, undefined);
      return {
        onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in result) return;
          if ((result.errors && result.errors.length > 0) || result.extensions !== undefined) return;
          const json = JSON.stringify(result);
          store(wanted.key, { version: wanted.version, json, bytes: json.length + wanted.key.length, meta: options.metaOf(request) });
          // Written as it was measured: serialised once.
          setResult(new CachedResult(json) as unknown as ExecutionResult);
        },
      };
    },
  };

  return {
    plugin,
    get bytes() {
      return bytes;
    },
    get entries() {
      return entries.size;
    },
  };
}
