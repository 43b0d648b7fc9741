/** The shapes of the fields the dashboard selects (schema.graphql names them). */

export type HealthStatus = 'HEALTHY' | 'DEGRADED' | 'UNHEALTHY' | 'UNKNOWN';

export interface ModuleHealth {
  status: HealthStatus;
  message: string | null;
  checkedAt: string | null;
}

export interface Module {
  id: string;
  orgId: string;
  name: string;
  version: string;
  enabled: boolean;
  hasCredential: boolean;
  usageCount: number;
  lastUsedAt: string | null;
  health: ModuleHealth;
}

export interface PageInfo {
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: PageInfo;
  totalCount?: number;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface Org {
  id: string;
  name: string;
  status: 'ACTIVE' | 'SUSPENDED';
  suspendReason: string | null;
  suspendedAt: string | null;
  createdAt: string;
}

export interface Viewer {
  org: Org;
  apiKey: { id: string; name: string; prefix: string; expiresAt: string | null };
  scopes: string[];
}

export interface Usage {
  periodStart: string;
  periodEnd: string;
  runUnits: number;
  requests: number;
  quota: number | null;
  remaining: number | null;
  nearQuota: boolean;
  warnAt: number;
  requestsPerMinute: number | null;
}

export interface UsageBucket {
  start: string;
  runUnits: number;
  requests: number;
}

export interface AuditRecord {
  id: string;
  seq: number;
  at: string;
  action: string;
  outcome: 'SUCCESS' | 'NOT_FOUND' | 'CONFLICT';
  actorVia: 'API' | 'CLI' | 'SYSTEM';
  actorKeyPrefix: string | null;
  targetId: string | null;
  requestId: string | null;
}

export interface OrgUsage {
  orgId: string;
  requests: number;
  runUnits: number;
}

export type ModuleEventKind = 'INSTALLED' | 'CHANGED' | 'HEALTH_REPORTED' | 'UNINSTALLED' | 'RESYNC';

/** A moduleEvents message: module is null for UNINSTALLED and RESYNC, moduleId null for RESYNC. */
export interface ModuleEvent {
  kind: ModuleEventKind;
  moduleId: string | null;
  orgId: string;
  at: string;
  module: Pick<Module, 'id' | 'enabled' | 'hasCredential' | 'usageCount' | 'health'> | null;
}

/** A moduleHealthEvents message (admin keys, every org). */
export interface ModuleHealthEvent {
  kind: ModuleEventKind;
  moduleId: string | null;
  orgId: string;
  at: string;
  module: Pick<Module, 'id' | 'name' | 'health'> | null;
}
