import type { ModuleField, ModuleRecord, ModuleRow } from './module-fields.ts';

// The store's own row types, whatever the dialect (modules: src/store/module-fields.ts): each dialect's schema is checked against them
// at compile time (src/store/sqlite/schema.ts). Timestamps are ISO-8601 UTC text.

export type OrgRow = {
  id: string;
  name: string;
  createdAt: string;
  /** 'suspended': every key of the org is refused (ORG_SUSPENDED) and nothing of it changes. */
  status: OrgStatus;
  /** When and why it was suspended; null while active. */
  suspendedAt: string | null;
  suspendReason: string | null;
};

export type OrgStatus = 'active' | 'suspended';

/** A new org: active. */
export type NewOrg = Pick<OrgRow, 'id' | 'name' | 'createdAt'>;

/**
 * Who makes a change, for the audit log (issue 15): written with the change, in its transaction.
 * Never a secret: a key's id and display prefix, not the key.
 */
export interface AuditActor {
  keyId: string | null;
  keyPrefix: string | null;
  /** The request's id (Exchange.requestId), for API calls. */
  requestId: string | null;
  /** The client address, for API calls. */
  address: string | null;
  via: 'api' | 'cli' | 'system';
}

/** What the audit log records (issue 15): one consistent name per kind of change or secret read. */
export const AUDIT_ACTIONS = [
  'KEY_CREATE',
  'KEY_REVOKE',
  'CREDENTIAL_SET',
  'CREDENTIAL_DELETE',
  'CREDENTIAL_REVEAL',
  'MODULE_INSTALL',
  'MODULE_UPDATE',
  'MODULE_ENABLE',
  'MODULE_DISABLE',
  'MODULE_UNINSTALL',
  'ORG_CREATE',
  'ORG_RENAME',
  'ORG_SUSPEND',
  'ORG_RESUME',
  'ORG_DELETE',
  'QUOTA_SET',
  /** Written by pruning: vouches for the hash of the last record pruned, so the rest stays verifiable. */
  'AUDIT_CHECKPOINT',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** How the recorded operation ended: made, or refused by the store (nothing changed). */
export type AuditOutcome = 'success' | 'not_found' | 'conflict';

/**
 * One audit record. Each org's records form a hash chain in `seq` order: `hash` covers
 * `prevHash` (the previous record's hash; 64 zeros for the first) and every other field. Never a
 * value: no secret, no config, no key.
 */
export interface AuditRecord {
  orgId: string;
  /** 1, 2, 3, ... within the org. */
  seq: number;
  /** `au_` and 24 random base32 characters. */
  id: string;
  at: string;
  action: AuditAction;
  actorKeyId: string | null;
  actorKeyPrefix: string | null;
  actorVia: AuditActor['via'];
  /** What the action was on: a key id, module id, org id, ... */
  targetId: string | null;
  requestId: string | null;
  clientAddress: string | null;
  outcome: AuditOutcome;
  prevHash: string;
  hash: string;
}

/**
 * An org's data key (issue 15): the AES-256 key its credentials are sealed under, itself sealed
 * (AES-256-GCM) under a master key. Deleting this row is crypto-shredding the org's credentials.
 */
export interface OrgKeyRow {
  orgId: string;
  /** `dk_` and a hash prefix of the key, named in the credentials it sealed (their keyId). */
  keyId: string;
  wrapped: Buffer;
  iv: Buffer;
  tag: Buffer;
  /** The master key that wrapped it. */
  masterKeyId: string;
  createdAt: string;
}

export type NewOrgKey = Omit<OrgKeyRow, 'orgId'>;

/** Start-up, migrations and tests that act as the gateway itself. */
export const SYSTEM_ACTOR: AuditActor = Object.freeze({ keyId: null, keyPrefix: null, requestId: null, address: null, via: 'system' });

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
  /** Which key sealed it: the org's data key (`dk_…`), or a master key (`mk_…`) before the move to data keys. */
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
  /** Org lifecycle (admin only, via the system repositories); undefined when the org does not exist. Announce a change of the org. */
  rename(name: string, at: string, actor: AuditActor): Promise<OrgRow | undefined>;
  /** Sets the status (suspending records `reason` and `at`; resuming clears both). */
  setStatus(status: OrgStatus, reason: string | null, at: string, actor: AuditActor): Promise<OrgRow | undefined>;

  /** This org's data key row (src/crypto/data-keys.ts); undefined before its first credential. */
  dataKey(): Promise<OrgKeyRow | undefined>;
  /**
   * Inserts the org's data key unless it has one, and returns the row then in place (this one, or
   * the one another process inserted first); undefined when the org does not exist.
   */
  createDataKey(row: NewOrgKey): Promise<OrgKeyRow | undefined>;

  apiKeys: {
    /** Oldest first. */
    list(): Promise<ApiKeyRow[]>;
    get(id: string): Promise<ApiKeyRow | undefined>;
    insert(row: NewApiKey, actor: AuditActor): Promise<void>;
    /** Sets revoked_at unless already set; returns the row (undefined if not in this org). */
    revoke(id: string, at: string, actor: AuditActor): Promise<ApiKeyRow | undefined>;
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
    revokeTree(
      id: string,
      at: string,
      check: (key: ApiKeyRow, descendants: readonly ApiKeyRow[]) => void,
      actor: AuditActor,
    ): Promise<KeyTree | undefined>;
  };

  modules: {
    list(opts: ModuleListOptions): Promise<ModuleRecord[]>;
    count(enabled: boolean | undefined): Promise<number>;
    /**
     * A page and the count of every module it is a page of (`enabled` applies to both), read
     * together: in PostgreSQL one transaction and one round trip instead of two.
     */
    listCounted(opts: ModuleListOptions): Promise<{ rows: ModuleRecord[]; total: number }>;
    get(moduleId: string): Promise<ModuleRecord | undefined>;
    /** false when the id exists already in this org. */
    insert(row: NewModule, actor: AuditActor): Promise<boolean>;
    /** A patch of `enabled` alone is recorded as MODULE_ENABLE / MODULE_DISABLE, any other as MODULE_UPDATE. */
    update(moduleId: string, patch: ModulePatch, at: string, actor: AuditActor): Promise<ModuleRecord | undefined>;
    /** Deletes the module and, by cascade in the same statement, its credential. */
    delete(moduleId: string, actor: AuditActor): Promise<boolean>;
  };

  credentials: {
    get(moduleId: string): Promise<CredentialRow | undefined>;
    list(): Promise<CredentialMeta[]>;
    has(moduleId: string): Promise<boolean>;
    /** Insert or replace; false when the module does not exist in this org. */
    upsert(row: NewCredential, actor: AuditActor): Promise<boolean>;
    delete(moduleId: string, actor: AuditActor): Promise<boolean>;
    /**
     * The sealed row, read in the transaction that records CREDENTIAL_REVEAL (not_found when
     * there is none): a reveal whose record cannot be written is refused, a StoreError of kind
     * `unavailable` (SERVICE_UNAVAILABLE).
     */
    reveal(moduleId: string, actor: AuditActor): Promise<CredentialRow | undefined>;
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
    setQuota(row: Omit<OrgQuotaRow, 'orgId'>, actor: AuditActor): Promise<OrgQuotaRow>;
  };

  /** This org's audit log (issue 15); records are appended only by the writes above, never by a caller. */
  audit: {
    /** Newest first (by seq), strictly before `beforeSeq` when given, filtered. */
    page(query: AuditQuery): Promise<AuditRecord[]>;
    /** Oldest first (by seq), strictly after `afterSeq`: what the verifier reads. */
    chain(afterSeq: number, limit: number): Promise<AuditRecord[]>;
    /** The chain's head (last seq and hash); undefined before the first record. */
    head(): Promise<{ seq: number; hash: string } | undefined>;
    /**
     * Retention: deletes the records with `at` before `before` and appends an AUDIT_CHECKPOINT
     * vouching for the last one deleted (src/store/audit-chain.ts), in one transaction; the
     * number deleted (0: nothing older, no checkpoint).
     */
    prune(before: string, actor: AuditActor): Promise<number>;
  };
}

export interface AuditQuery {
  beforeSeq?: number | undefined;
  actions?: readonly AuditAction[] | undefined;
  /** at >= since */
  since?: string | undefined;
  /** at < until */
  until?: string | undefined;
  actorKeyId?: string | undefined;
  limit: number;
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
    /** Records ORG_CREATE in the new org's log (conflict: in the existing org's). */
    insert(row: NewOrg, actor: AuditActor): Promise<boolean>;
    /**
     * Deletes the org and every row of it, in every table, in one transaction (its data key
     * included: its credentials can never be opened again); false when it does not exist. The
     * record of the deletion goes to the operator org's audit log (the org's own goes with it).
     */
    delete(orgId: string, at: string, actor: AuditActor): Promise<boolean>;
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
    /** Up to `limit` rows, across orgs, sealed directly under a master key (key id `mk_…`): the ones start-up moves to data keys. */
    underMasterKey(limit: number): Promise<CredentialRow[]>;
  };

  /** The orgs' data keys across orgs, for master-key rotation and the start-up key check. */
  orgKeys: {
    /** Every master key id that wraps some org's data key. */
    masterKeyIds(): Promise<string[]>;
    /** Up to `limit` rows, across orgs, not wrapped under `masterKeyId`. */
    notUnderMaster(masterKeyId: string, limit: number): Promise<OrgKeyRow[]>;
    /** Compare-and-swap: replaces the wrapping (wrapped, iv, tag, masterKeyId) only if the row still has `expectedIv`. */
    rewrap(row: OrgKeyRow, expectedIv: Buffer): Promise<boolean>;
  };
}

/** What happened to one module, as the change feed tells it (the GraphQL `moduleEvents` subscription hangs off it). */
export type ModuleEventKind = 'installed' | 'changed' | 'health' | 'uninstalled';

/** One module's change: which module of the change's org, and what happened to it. Never a value. */
export interface ModuleChange {
  id: string;
  event: ModuleEventKind;
}

/** What a subscriber of the change feed hears: an org whose data may have changed, or null for any. */
export interface Change {
  orgId: string | null;
  /** 'data': only the org's modules or credentials changed (its keys did not); absent: anything of the org may have. */
  kind?: 'data';
  /**
   * The module a committed write changed, when the write was one module's (install, update, enable,
   * disable, uninstall, a health or usage report, its credential set or deleted). Heard once per
   * write in every process: in SQLite from this process's own writes (other processes' commits
   * come as {orgId: null}); in PostgreSQL from the notification, so every replica hears it the same
   * way (this process's own `wrote` announcement carries none, which would be heard twice).
   */
  module?: ModuleChange;
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
