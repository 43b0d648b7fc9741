// The store's own row types, whatever the dialect: each dialect's schema is checked against them
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

export type ModuleRow = {
  orgId: string;
  moduleId: string;
  name: string;
  version: string;
  description: string | null;
  /** JSON object, as text. */
  config: string;
  enabled: boolean;
  healthStatus: string;
  healthMessage: string | null;
  lastHealthCheck: string | null;
  usageCount: number;
  lastUsedAt: string | null;
  installedAt: string;
  updatedAt: string;
};

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
 * The storage seam. Repositories (src/repos) are its only callers; resolvers never see it. Every
 * tenant method takes the org id first and filters by it; the methods under `system` and
 * `apiKeys.findByHash` are the deliberate cross-org exceptions, reached only by admin code paths
 * and by authentication. Methods return promises so that an asynchronous dialect (PostgreSQL) can
 * implement the same interface; compound writes are single methods, so no transaction spans an
 * await.
 */
export interface Store {
  readonly dialect: 'sqlite';
  /** Where the data lives, for logs and /ready (never contains credentials). */
  readonly location: string;

  orgs: {
    get(id: string): Promise<OrgRow | undefined>;
    list(): Promise<OrgRow[]>;
    /** false when the id is taken. */
    insert(row: OrgRow): Promise<boolean>;
  };

  apiKeys: {
    /** The one unscoped lookup: a key's hash is how we learn its org. */
    findByHash(hash: string): Promise<ApiKeyRow | undefined>;
    count(): Promise<number>;
    listForOrg(orgId: string): Promise<ApiKeyRow[]>;
    getForOrg(orgId: string, id: string): Promise<ApiKeyRow | undefined>;
    insert(row: ApiKeyRow): Promise<void>;
    /** Sets revoked_at unless already set; returns the row (undefined if not in this org). */
    revoke(orgId: string, id: string, at: string): Promise<ApiKeyRow | undefined>;
    /**
     * The keys `id` created, directly or through keys it created, oldest first. The walk follows
     * created_by_key_id within `orgId` only: a key of another org is never reached, whatever its
     * ids. Empty when the key has none or is not in this org.
     */
    descendants(orgId: string, id: string): Promise<ApiKeyRow[]>;
    /**
     * Revokes the key and all its descendants (as above) in one transaction. `check` sees the key
     * and its descendants as they are inside that transaction and may throw: then nothing is
     * revoked. Undefined (and `check` not called) when the key is not in this org.
     */
    revokeTree(
      orgId: string,
      id: string,
      at: string,
      check: (key: ApiKeyRow, descendants: readonly ApiKeyRow[]) => void,
    ): Promise<KeyTree | undefined>;
    /** Batched last-used writes: one transaction for many keys. */
    touch(entries: ReadonlyArray<readonly [keyId: string, at: string]>): Promise<void>;
  };

  modules: {
    list(orgId: string, opts: ModuleListOptions): Promise<ModuleRecord[]>;
    count(orgId: string, enabled: boolean | undefined): Promise<number>;
    get(orgId: string, moduleId: string): Promise<ModuleRecord | undefined>;
    /** false when (org, id) exists already. */
    insert(row: NewModule): Promise<boolean>;
    update(orgId: string, moduleId: string, patch: ModulePatch, at: string): Promise<ModuleRecord | undefined>;
    /** Deletes the module and, by cascade in the same statement, its credential. */
    delete(orgId: string, moduleId: string): Promise<boolean>;
  };

  credentials: {
    get(orgId: string, moduleId: string): Promise<CredentialRow | undefined>;
    list(orgId: string): Promise<CredentialMeta[]>;
    has(orgId: string, moduleId: string): Promise<boolean>;
    /** Insert or replace; false when the module does not exist in this org. */
    upsert(row: CredentialRow): Promise<boolean>;
    delete(orgId: string, moduleId: string): Promise<boolean>;
    /** Every key id in use, across orgs (start-up check and rotation). */
    keyIds(): Promise<string[]>;
    /** Up to `limit` rows, across orgs, not sealed under `keyId` (rotation). */
    notUnderKey(keyId: string, limit: number): Promise<CredentialRow[]>;
    /** Compare-and-swap: replaces the sealed value only if the row still has `expectedIv`. */
    reseal(row: CredentialRow, expectedIv: Buffer): Promise<boolean>;
  };

  system: {
    reportHealth(orgId: string, moduleId: string, status: HealthStatus, message: string | null, at: string): Promise<ModuleRecord | undefined>;
    recordUsage(orgId: string, moduleId: string, count: number, at: string): Promise<ModuleRecord | undefined>;
    unhealthy(limit: number): Promise<ModuleRecord[]>;
  };

  /**
   * A token that changes whenever the org's modules or credentials may have changed: by a write
   * through this store, or by a commit of any other connection to the same data (another
   * process, the CLI). Read it before reading the data it vouches for. Synchronous and cheap, as
   * the response cache asks on every request; a store that cannot tell leaves it out, and then
   * nothing is cached.
   */
  dataVersion?(orgId: string): string;

  /** Store open, schema current and writable; a reason when not. */
  check(): Promise<{ ok: true } | { ok: false; reason: string }>;
  close(): Promise<void>;
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

/** The fields of a module record a list can be narrowed to. */
export type ModuleField = Exclude<keyof ModuleRecord, 'orgId' | 'moduleId'>;

export type ModuleRecord = ModuleRow & { hasCredential: boolean };

export type NewModule = Pick<
  ModuleRow,
  'orgId' | 'moduleId' | 'name' | 'version' | 'description' | 'config' | 'enabled' | 'installedAt' | 'updatedAt'
>;

export type ModulePatch = Partial<Pick<ModuleRow, 'name' | 'version' | 'description' | 'config' | 'enabled'>>;

export type CredentialMeta = Pick<CredentialRow, 'orgId' | 'moduleId' | 'fields' | 'keyId' | 'createdAt' | 'updatedAt'>;
