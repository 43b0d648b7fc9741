import { getOperationAST, Kind, type DocumentNode, type ExecutionResult } from 'graphql';
import type { OperationMeta } from './exchange.ts';

/** What a cached answer was computed for: the caller's org and the scopes its key holds. */
export interface CachePrincipal {
  orgId: string;
  scopes: ReadonlySet<string>;
}

export interface ResponseCacheOptions {
  /** Bytes of answers kept (estimated), all orgs together; 0 turns the cache off. */
  maxBytes: number;
  /** Root fields whose answers may be kept: read-only, and reading nothing but the org's own data. */
  rootFields: ReadonlySet<string>;
  /**
   * Changes whenever the org's data may have changed (the store's change feed); undefined while
   * the feed cannot vouch for it, when nothing is answered or kept.
   */
  dataVersion: (orgId: string) => string | undefined;
}

/** The request parameters a cached answer is keyed by (besides the principal). */
export interface CacheParams {
  query?: unknown;
  operationName?: unknown;
  variables?: unknown;
}

/** A fresh cached answer: the response body as written, and the operation as the log names it. */
export interface CachedAnswer {
  /** UTF-8 JSON; not to be modified. */
  body: Buffer;
  meta: OperationMeta | undefined;
}

/** What to keep an answer under once it has executed: the key and the data version read before. */
export interface Pending {
  readonly key: string;
  readonly version: string;
  readonly orgId: string;
  readonly query: string;
}

export interface ResponseCache {
  /** False when `maxBytes` is 0: nothing is ever kept or answered. */
  readonly enabled: boolean;
  /**
   * For an authenticated and admitted request: its fresh answer (`hit`), or what to keep its
   * answer under once it has executed (`miss`), or undefined when it is not a request the cache
   * keeps. Read before execution, so an answer that raced a write is never kept as fresh.
   */
  probe(principal: CachePrincipal, params: CacheParams): { hit: CachedAnswer; miss?: undefined } | { miss: Pending; hit?: undefined } | undefined;
  /** Whether the operation may be kept: a query whose every root field is cacheable. */
  cacheable(pending: Pending, document: DocumentNode, operationName: unknown): boolean;
  /**
   * Keeps the executed answer of a cacheable operation when it has no errors; returns its bytes,
   * the response body, when kept.
   */
  keep(pending: Pending, result: ExecutionResult, meta: OperationMeta): Buffer | undefined;
  /** Bytes held now (estimated: answers, keys and a fixed cost per entry). */
  readonly bytes: number;
  readonly entries: number;
}

/** Longer operation texts or variables are not looked up (a dashboard's poll is short). */
const MAX_KEYED_TEXT = 16 * 1024;
/** Operation texts whose verdict (may be kept or not) is remembered; past it, they start over. */
const MAX_VERDICTS = 1024;
/** Longer texts are decided again each time (remembered texts then take at most 2 MiB). */
const MAX_VERDICT_TEXT = 2048;
/**
 * What an entry costs besides its key and body bytes: the map slot, the entry and meta objects,
 * the version, and the Buffer with its backing store.
 */
const ENTRY_OVERHEAD_BYTES = 480;
/** One org may hold at most this share of the cache, so one busy org cannot empty it for the rest. */
const ORG_SHARE = 1 / 8;

/** Heap bytes of a string: one per character if all are Latin-1, else two. */
const stringBytes = (s: string): number => (/[^\u0000-\u00ff]/.test(s) ? 2 * s.length : s.length);

/**
 * The variables as a cache key, or undefined when they cannot be one: JSON drops the difference
 * between a non-finite number and null, and between a missing value and undefined, which
 * coercion does not.
 */
function variablesKey(variables: unknown): string | undefined {
  if (variables === undefined || variables === null) return 'null';
  let keyable = true;
  const text = JSON.stringify(variables, (_key, value: unknown) => {
    if ((typeof value === 'number' && !Number.isFinite(value)) || value === undefined) keyable = false;
    return value;
  });
  return keyable && text.length <= MAX_KEYED_TEXT ? text : undefined;
}

interface Entry {
  orgId: string;
  version: string;
  /** The response body, UTF-8: the listener writes it as is (no copy, no encoding per hit). */
  body: Buffer;
  bytes: number;
  meta: OperationMeta | undefined;
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
 * Memory is bounded by `maxBytes` (an estimate: the UTF-8 bytes of answers, the key strings, and
 * a fixed cost per entry); the least recently used answer goes first, and one org may hold at most an
 * eighth of it, its own least recently used answers going first past that.
 */
export function createResponseCache(options: ResponseCacheOptions): ResponseCache {
  const entries = new Map<string, Entry>();
  const orgBytes = new Map<string, number>();
  const orgLimit = Math.max(1, Math.floor(options.maxBytes * ORG_SHARE));
  const scopeKeys = new WeakMap<ReadonlySet<string>, string>();
  let bytes = 0;

  const scopeKey = (scopes: ReadonlySet<string>): string => {
    let key = scopeKeys.get(scopes);
    if (key === undefined) scopeKeys.set(scopes, (key = [...scopes].sort().join(' ')));
    return key;
  };

  // Whether an operation (text and name) may be kept, decided from its document the first time it
  // executes. A known "no" (a mutation, `viewer`) then skips the lookup before any work: no key,
  // no data version, no serialised variables (a credential's can be a megabyte).
  const verdicts = new Map<string, Map<string, boolean>>();
  const verdictOf = (query: string, operationName: string | null | undefined): boolean | undefined =>
    verdicts.get(query)?.get(operationName ?? '');
  const decide = (query: string, document: DocumentNode, operationName: string | null | undefined): boolean => {
    const known = verdictOf(query, operationName);
    if (known !== undefined) return known;
    const operation = getOperationAST(document, operationName);
    const verdict =
      operation !== null &&
      operation !== undefined &&
      operation.operation === 'query' &&
      operation.selectionSet.selections.every(
        (s) => s.kind === Kind.FIELD && (s.name.value === '__typename' || options.rootFields.has(s.name.value)),
      );
    if (query.length > MAX_VERDICT_TEXT) return verdict;
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    let byName = verdicts.get(query);
    if (byName === undefined) verdicts.set(query, (byName = new Map()));
    byName.set(operationName ?? '', verdict);
    return verdict;
  };

  const drop = (key: string, entry: Entry) => {
    entries.delete(key);
    bytes -= entry.bytes;
    const held = (orgBytes.get(entry.orgId) ?? 0) - entry.bytes;
    if (held > 0) orgBytes.set(entry.orgId, held);
    else orgBytes.delete(entry.orgId);
  };

  const store = (key: string, entry: Entry) => {
    if (entry.bytes > orgLimit) return;
    const old = entries.get(key);
    if (old) drop(key, old);
    entries.set(key, entry);
    bytes += entry.bytes;
    orgBytes.set(entry.orgId, (orgBytes.get(entry.orgId) ?? 0) + entry.bytes);
    // Over the org's share: its own least recently used answers go first.
    if (orgBytes.get(entry.orgId)! > orgLimit) {
      for (const [oldestKey, oldest] of entries) {
        if ((orgBytes.get(entry.orgId) ?? 0) <= orgLimit) break;
        if (oldest.orgId === entry.orgId) drop(oldestKey, oldest);
      }
    }
    for (const [oldestKey, oldest] of entries) {
      if (bytes <= options.maxBytes) break;
      drop(oldestKey, oldest);
    }
  };

  /**
   * A fresh answer for these parameters (moved to most recently used), or what to store one
   * under once it has executed, or undefined when the request is not one the cache keeps.
   */
  const probe: ResponseCache['probe'] = (principal, params) => {
    const { query, operationName } = params;
    if (options.maxBytes <= 0 || typeof query !== 'string' || query.length > MAX_KEYED_TEXT) return undefined;
    // An operation name is a non-empty string or absent; anything else is not looked up (and
    // fails resolution when executed).
    if (operationName !== undefined && operationName !== null && (typeof operationName !== 'string' || operationName === '')) return undefined;
    if (verdictOf(query, operationName) === false) return undefined;
    const variables = variablesKey(params.variables);
    if (variables === undefined) return undefined;
    // JSON, so no part can run into the next whatever characters it holds.
    const key = JSON.stringify([principal.orgId, scopeKey(principal.scopes), operationName ?? null, query]) + variables;
    let version: string | undefined;
    try {
      version = options.dataVersion(principal.orgId);
    } catch {
      // A feed that cannot answer cannot vouch either: the request executes, as on Yoga's path.
      return undefined;
    }
    if (version === undefined) return undefined;
    const entry = entries.get(key);
    if (entry !== undefined) {
      if (entry.version === version) {
        // Most recently used goes last; eviction takes from the front.
        entries.delete(key);
        entries.set(key, entry);
        return { hit: entry };
      }
      drop(key, entry);
    }
    return { miss: { key, version, orgId: principal.orgId, query } };
  };

  const cacheable: ResponseCache['cacheable'] = (wanted, document, operationName) =>
    decide(wanted.query, document, typeof operationName === 'string' ? operationName : undefined);

  const keep: ResponseCache['keep'] = (wanted, result, meta) => {
    if ((result.errors && result.errors.length > 0) || result.extensions !== undefined) return undefined;
    const json = JSON.stringify(result);
    // Not from Buffer's shared pool: a kept slice would hold on to the whole 8 KiB slab.
    const body = Buffer.allocUnsafeSlow(Buffer.byteLength(json));
    body.write(json);
    const size = body.byteLength + stringBytes(wanted.key) + ENTRY_OVERHEAD_BYTES;
    store(wanted.key, { orgId: wanted.orgId, version: wanted.version, body, bytes: size, meta });
    return body;
  };

  return {
    enabled: options.maxBytes > 0,
    probe,
    cacheable,
    keep,
    get bytes() {
      return bytes;
    },
    get entries() {
      return entries.size;
    },
  };
}
