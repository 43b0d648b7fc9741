/**
 * Store failures, in words that mean the same in every dialect. Each dialect maps its own codes
 * (src/store/sqlite/errors.ts); nothing above the store sees them. The kinds are the label of the
 * metric tenantgate_store_errors_total, so the list is short and closed.
 */
export const STORE_ERROR_KINDS = ['unavailable', 'busy', 'readonly', 'full', 'io', 'corrupt', 'constraint', 'other'] as const;

export type StoreErrorKind = (typeof STORE_ERROR_KINDS)[number];

/**
 * The kinds a client may retry: the store is there (or will be) but cannot take the request right
 * now. `unavailable` is a store that cannot be reached (a networked database down or its
 * connection lost); `busy` a lock held past the wait; `readonly`, `full` and `io` a store that
 * cannot take writes.
 */
const RETRYABLE: ReadonlySet<StoreErrorKind> = new Set(['unavailable', 'busy', 'readonly', 'full', 'io']);

/**
 * A failure of the store itself (not of the caller's input, which the repositories check first).
 * Its message and `code` are the dialect's, for the server's log only: they may name tables,
 * columns or files, so neither ever reaches a client.
 */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly kind: StoreErrorKind;
  /** The dialect's own code (e.g. SQLITE_BUSY, or a PostgreSQL SQLSTATE), for logs. */
  readonly code: string;

  constructor(kind: StoreErrorKind, code: string, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.kind = kind;
    this.code = code;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.kind);
  }
}
