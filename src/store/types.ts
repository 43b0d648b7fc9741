import type { ModuleField, ModuleRecord, ModuleRow } from './module-fields.ts';

// The store's own row types, whatever the dialect (modules: src/store/module-fields.ts): each dialect's schema is checked against them
// at compile time (src/store/sqlite/schema.ts). Timestamps are ISO-8601 UTC text.

export type OrgRow = {
  id: string;
  name: string;
  createdAt: string;
};

export type ApiKeyRow = {
  id: string;
  orgId: string;
  name: string;
  /** The key's first characters, for people to recognise it; never enough to use it. */
  prefix: string;
  /** SHA-256 of the key, hex; the key itself is never stored. */
  hash: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  createdByKeyId: string | null;
};


export type { ModuleField, ModuleRecord, ModuleRow } from './module-fields.ts';

export type CredentialRow = {
  orgId: string;
  moduleId: string;
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  /** Which master key sealed it. */
  keyId: string;
  /** Field names only; never values. */
  fields: string[];
  createdAt: string;
  updatedAt: string;
};

/** The org that exists after every migration: pre-tenant data and the operator's keys live here. */
export const DEFAULT_ORG = { id: 'default', name: 'Default' } as const;

/**
 * The storage seam. Repositories (src/repos) are its only callers; resolvers never see it.
 *
 * - `forOrg(orgId)`: the org-bound store. Every tenant call goes through it, and none of its
 *   methods takes an org id: each is one unit of work for that org alone (in PostgreSQL, one
 *   transaction under row-level security with the org set for it).
 * - `auth` and `system`: the deliberate cross-org exceptions, each method saying why. `auth` is for
 *   authentication (src/auth/authenticator.ts) only; `system` for the admin repositories
 *   (src/repos/system.ts), start-up and maintenance (src/maintenance, src/cli.ts).
 * - `changes`: how caches learn that an org's data changed.
 *
 * Methods return promises so that an asynchronous, networked dialect implements the same
 * interface; compound writes are single methods, so no transaction spans an await. A failure of
 * the store itself rejects with a StoreError (src/store/errors.ts), never a dialect's own error.
 */
export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  /** Where the data lives, for logs and /ready (never contains credentials). */
  readonly location: string;

  /** The store of one org: its methods see and change that org's rows and no other's. */
  forOrg(orgId: string): OrgStore;

  readonly auth: AuthStore;
  readonly system: SystemStore;
  readonly changes: ChangeFeed;

  /**
   * A failure counter every process on this store shares (the failed-authentication limit), when
   * the dialect has one (PostgreSQL: a table); absent, each process counts in memory (SQLite: one
   * machine, one process).
   */
  failureLimiter?(options: FailureLimiterOptions): FailureLimiter;
  /**
   * A request-rate counter every process on this store shares (the per-org rate limits, keyed by
   * org id), when the dialect has one (PostgreSQL: tenantgate_limits.org_requests); absent, each
   * process counts in memory.
   */
  requestLimiter?(options: FailureLimiterOptions): RequestLimiter;

  /** Store open, schema current and writable; a reason when not. */
  check(): Promise<{ ok: true } | { ok: false; reason: string }>;
  close(): Promise<void>;
}

/** One org's data. Another org's row is never read, changed or counted: it answers as a missing one. */
export interface OrgStore {
  readonly orgId: string;
  /** This org's own row. */
  org(): Promise<OrgRow | undefined>;

  apiKeys: {
    /** Oldest first. */
    list(): Promise<ApiKeyRow[]>;
    get(id: string): Promise<ApiKeyRow | undefined>;
    insert(row: NewApiKey): Promise<void>;
    /** Sets revoked_at unless already set; returns the row (undefined if not in this org). */
    revoke(id: string, at: string): Promise<ApiKeyRow | undefined>;
    /**
     * The keys `id` created, directly or through keys it created, oldest first. The walk follows
     * created_by_key_id within this org only: a key of another org is never reached, whatever its
     * ids. Empty when the key has none or is not in this org.
     */
    descendants(id: string): Promise<ApiKeyRow[]>;
    /**
     * Revokes the key and all its descendants (as above) in one transaction. `check` sees the key
     * and its descendants as they are inside that transaction and may throw: then nothing is
     * revoked. Undefined (and `check` not called) when the key is not in this org.
     */
    revokeTree(id: string, at: string, check: (key: ApiKeyRow, descendants: readonly ApiKeyRow[]) => void): Promise<KeyTree | undefined>;
  };

  modules: {
    list(opts: ModuleListOptions): Promise<ModuleRecord[]>;
    count(enabled: boolean | undefined): Promise<number>;
    get(moduleId: string): Promise<ModuleRecord | undefined>;
    /** false when the id exists already in this org. */
    insert(row: NewModule): Promise<boolean>;
    update(moduleId: string, patch: ModulePatch, at: string): Promise<ModuleRecord | undefined>;
    /** Deletes the module and, by cascade in the same statement, its credential. */
    delete(moduleId: string): Promise<boolean>;
  };

  credentials: {
    get(moduleId: string): Promise<CredentialRow | undefined>;
    list(): Promise<CredentialMeta[]>;
    has(moduleId: string): Promise<boolean>;
    /** Insert or replace; false when the module does not exist in this org. */
    upsert(row: NewCredential): Promise<boolean>;
    delete(moduleId: string): Promise<boolean>;
  };

  /** Run-unit metering and this org's quotas (issue 14). */
  usage: {
    /**
     * Records one report in one transaction, exactly once per idempotency key in this org,
     * however many processes send it at once:
     * - an event with the same idempotencyKey exists: `repeat`, with that first event, and nothing
     *   counted (whatever units, module or time the repeat carries);
     * - `event.moduleId` set and not a module of this org: `no-module`, nothing recorded;
     * - `runUnitsPerMonth` not null and the month of `occurredAt` (UTC) would go past it with these
     *   units: `over-quota` with the limit and what that month had used, nothing recorded;
     * - else `recorded`: the event is stored and its units added to its month's and its hour's
     *   totals in the same transaction, so concurrent reports add up to exactly their sum and a
     *   quota is never overshot.
     */
    record(event: NewRunUnitEvent, runUnitsPerMonth: number | null): Promise<RecordRunUnitsResult>;
    /** Run units (by occurredAt) and requests served in the UTC calendar month starting at `monthStart` (ISO, `YYYY-MM-01T00:00:00.000Z`). */
    month(monthStart: string): Promise<UsageTotals>;
    /**
     * Totals per bucket with start in [from, to) (ISO, aligned to the bucket), oldest first;
     * buckets without use are absent (the caller fills the gaps).
     */
    series(from: string, to: string, granularity: 'hour' | 'day'): Promise<UsageBucket[]>;
    /** Events ordered by (occurredAt, id), strictly after `after`, with occurredAt in [since, until) when given. */
    events(opts: RunUnitEventQuery): Promise<RunUnitEvent[]>;
    /** This org's quota row; undefined when none was ever set. */
    quota(): Promise<OrgQuotaRow | undefined>;
    /** Insert or replace this org's quota row (admin only, via the system repositories). */
    setQuota(row: Omit<OrgQuotaRow, 'orgId'>): Promise<OrgQuotaRow>;
  };
}

/** Authentication's cross-org operations: before a key is verified there is no org to bind to. */
export interface AuthStore {
  /** The one unscoped read: a key's hash is how we learn its org. */
  keyByHash(hash: string): Promise<ApiKeyRow | undefined>;
  /**
   * Batched last-used times of keys of any orgs, one transaction for many keys (buffered by the
   * authenticator, which knows only key ids by then). Best effort: not a change caches hear of.
   */
  touchKeys(entries: ReadonlyArray<readonly [keyId: string, at: string]>): Promise<void>;
}

/** The operator's cross-org operations: admin repositories, start-up and maintenance only. */
export interface SystemStore {
  orgs: {
    /** Every org, by id: the admin's list. */
    list(): Promise<OrgRow[]>;
    /** Org lifecycle: false when the id is taken. */
    insert(row: OrgRow): Promise<boolean>;
  };

  /** How many keys exist in all orgs: none means a fresh store, which gets a bootstrap admin key. */
  keyCount(): Promise<number>;

  /** Platform reports about a module of any org (the platform, not the org, observes them). */
  modules: {
    reportHealth(orgId: string, moduleId: string, status: HealthStatus, message: string | null, at: string): Promise<ModuleRecord | undefined>;
    recordUsage(orgId: string, moduleId: string, count: number, at: string): Promise<ModuleRecord | undefined>;
    /** Degraded and unhealthy modules of every org, by org then id. */
    unhealthy(limit: number): Promise<ModuleRecord[]>;
  };

  /** Metering across orgs: the served-request counter and the admin's rankings. */
  usage: {
    /**
     * Adds served-request counts, batched by the process (best effort, like touchKeys): each
     * entry adds `count` to the org's month and hour containing `hourStart` (ISO, on the hour).
     * Entries of orgs that do not exist are dropped.
     */
    addRequests(entries: ReadonlyArray<{ orgId: string; hourStart: string; count: number }>): Promise<void>;
    /** Orgs by run units used in the month at `monthStart`, most first (ties by org id); orgs with none are absent. */
    top(monthStart: string, limit: number): Promise<Array<UsageTotals & { orgId: string }>>;
    /** Every org's quota row (for the gates' cache on start; few rows). */
    quotas(): Promise<OrgQuotaRow[]>;
  };

  /** Master-key rotation works over every org's credentials (src/maintenance/rekey.ts). */
  credentials: {
    /** Every key id in use, across orgs. */
    keyIds(): Promise<string[]>;
    /** Up to `limit` rows, across orgs, not sealed under `keyId`. */
    notUnderKey(keyId: string, limit: number): Promise<CredentialRow[]>;
    /** Compare-and-swap: replaces the sealed value only if the row still has `expectedIv`. */
    reseal(row: CredentialRow, expectedIv: Buffer): Promise<boolean>;
  };
}

/** What a subscriber of the change feed hears: an org whose data may have changed, or null for any. */
export interface Change {
  orgId: string | null;
  /** 'data': only the org's modules or credentials changed (its keys did not); absent: anything of the org may have. */
  kind?: 'data';
}

/**
 * How caches learn that data changed, in a shape a networked database can implement (in
 * PostgreSQL: NOTIFY in the writing transaction, one LISTEN connection per process). A token may
 * change more often than the data does (a spurious miss costs little), never less.
 */
export interface ChangeFeed {
  /**
   * A token that differs whenever the org's modules or credentials (what cached answers read) may
   * have changed, as far as this process has learned: its own writes at once, other processes'
   * commits as the dialect tells it. Undefined while the feed cannot vouch for it (e.g. a lost LISTEN connection): then
   * no cache may answer. Read it before the data it vouches for. Synchronous and cheap: it is
   * asked on every cached answer.
   */
  version(orgId: string): string | undefined;
  /**
   * Every change this process learns of (modules, credentials, keys, orgs), its own writes and
   * other processes'; returns the unsubscribe. For caches that drop entries eagerly (the key cache, subscriptions). Listeners
   * run synchronously after the write and must not throw.
   */
  subscribe(listener: (change: Change) => void): () => void;
}

/** One run-unit report, as stored. */
export interface RunUnitEvent {
  /** `ru_` and 24 random base32 characters, made by the caller. */
  id: string;
  orgId: string;
  /** The reporter's id for this report (1-200 printable characters): a repeat of it is recorded once. */
  idempotencyKey: string;
  /** A positive integer, at most MAX_RUN_UNITS (src/repos/usage.ts). */
  units: number;
  /** The module the work is attributed to (of the same org), or null. */
  moduleId: string | null;
  /** When the work happened (ISO UTC); its month is the one it counts in. */
  occurredAt: string;
  /** When the gateway recorded it (ISO UTC). */
  recordedAt: string;
  /** The key that reported it. */
  keyId: string | null;
}

export type NewRunUnitEvent = Omit<RunUnitEvent, 'orgId'>;

export type RecordRunUnitsResult =
  | { kind: 'recorded'; event: RunUnitEvent }
  | { kind: 'repeat'; event: RunUnitEvent }
  | { kind: 'no-module' }
  | { kind: 'over-quota'; limit: number; used: number };

export interface UsageTotals {
  runUnits: number;
  requests: number;
}

export interface UsageBucket extends UsageTotals {
  /** The bucket's start, ISO UTC. */
  start: string;
}

export interface RunUnitEventQuery {
  /** Keyset cursor: events strictly after this (occurredAt, id); undefined for the first page. */
  after?: { occurredAt: string; id: string };
  /** occurredAt >= since */
  since?: string;
  /** occurredAt < until */
  until?: string;
  limit: number;
}

/** An org's quotas; null means the configured default applies (none configured: unlimited). */
export interface OrgQuotaRow {
  orgId: string;
  runUnitsPerMonth: number | null;
  requestsPerMinute: number | null;
  burst: number | null;
  updatedAt: string;
}

/** A key and its descendants, read after a revocation; `revoked` holds the ids that were live until it. */
export interface KeyTree {
  key: ApiKeyRow;
  descendants: ApiKeyRow[];
  revoked: string[];
}

export type HealthStatus = 'unknown' | 'healthy' | 'degraded' | 'unhealthy';

export interface ModuleListOptions {
  enabled: boolean | undefined;
  /** Return ids strictly greater than this (keyset pagination); '' for the first page. */
  after: string;
  limit: number;
  /**
   * Read only these fields (plus orgId and moduleId); the others are absent from the rows. Reading
   * and converting columns nobody asked for is most of a page's cost, so the API passes down what
   * the query selects. Omitted: every field.
   */
  fields?: ReadonlySet<ModuleField>;
}


/** A module to insert; the org is the store's. */
export type NewModule = Pick<
  ModuleRow,
  'moduleId' | 'name' | 'version' | 'description' | 'config' | 'enabled' | 'installedAt' | 'updatedAt'
>;

/** A key to insert; the org is the store's. */
export type NewApiKey = Omit<ApiKeyRow, 'orgId'>;

/** A credential to insert or replace; the org is the store's. */
export type NewCredential = Omit<CredentialRow, 'orgId'>;

export type ModulePatch = Partial<Pick<ModuleRow, 'name' | 'version' | 'description' | 'config' | 'enabled'>>;

export type CredentialMeta = Pick<CredentialRow, 'orgId' | 'moduleId' | 'fields' | 'keyId' | 'createdAt' | 'updatedAt'>;

export interface FailureLimiterOptions {
  /** Distinguishes this limit's counters from others' in a shared table. */
  name: string;
  /** Failures a key (a client address) may have in `durationSec`. */
  points: number;
  durationSec: number;
}

/** What the rate-limit gate asks of a shared counter (rate-limiter-flexible's limiters have this shape). */
export interface RequestLimiter {
  /** Spends `points`; rejects with rate-limiter-flexible's RateLimiterRes (msBeforeNext) when none are left. */
  consume(key: string, points?: number): Promise<unknown>;
}

/** What the pipeline asks of a failure counter (rate-limiter-flexible's limiters have this shape). */
export interface FailureLimiter {
  /** The key's count in the current window, or null when it has none. */
  get(key: string): Promise<{ consumedPoints: number; msBeforeNext: number } | null>;
  /** Counts `points` more failures for the key. */
  penalty(key: string, points: number): Promise<unknown>;
}
