import { createClient, NetworkError, type Client } from 'graphql-sse';
import type { ModuleEvent, ModuleHealthEvent } from './types.ts';

/**
 * Live updates over GraphQL subscriptions on server-sent events. graphql-yoga serves the GraphQL
 * over SSE protocol's "distinct connections mode" (one POST with Accept: text/event-stream per
 * subscription), which is graphql-sse's client with singleConnection: false. EventSource cannot
 * send the bearer header; graphql-sse's fetch-based client can.
 */

const MODULE_EVENTS = `subscription DashboardModuleEvents {
  moduleEvents { kind moduleId orgId at module { id enabled hasCredential usageCount health { status message checkedAt } } }
}`;

const MODULE_HEALTH_EVENTS = `subscription DashboardModuleHealthEvents {
  moduleHealthEvents { kind moduleId orgId at module { id name health { status message checkedAt } } }
}`;

export type LiveState = 'connecting' | 'live' | 'offline';

type Listener<T> = (value: T) => void;

/** A small set of listeners: the panels that want events hear them. */
class Channel<T> {
  private readonly listeners = new Set<Listener<T>>();
  listen(listener: Listener<T>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
}

const RESYNC_BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/** One subscription that comes back after errors, reporting its state and its messages. */
function keepSubscribed<T>(
  client: Client,
  query: string,
  field: string,
  onData: (event: T) => void,
  onState: (state: LiveState) => void,
  onResync: () => void,
): () => void {
  let dispose: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;
  let everConnected = false;
  let stopped = false;

  const again = () => {
    onState('offline');
    if (stopped) return;
    const wait = RESYNC_BACKOFF_MS[Math.min(failures, RESYNC_BACKOFF_MS.length - 1)] ?? 30_000;
    failures += 1;
    timer = setTimeout(start, wait);
  };

  function start(): void {
    dispose = client.subscribe<Record<string, T>>(
      { query },
      {
        next(result) {
          const event = result.data?.[field];
          if (event) onData(event);
          else if (result.errors?.length) {
            dispose?.();
            again();
          }
        },
        error(error) {
          // The key no longer works (revoked, expired) or its org is suspended: trying again cannot help.
          const status = error instanceof NetworkError ? error.response?.status : undefined;
          if (status === 401 || status === 403) {
            stopped = true;
            onState('offline');
            return;
          }
          again();
        },
        complete: () => {
          if (!stopped) again();
        },
      },
      {
        connecting: () => onState('connecting'),
        connected: () => {
          // Whatever happened while the stream was down was not heard: the panels refetch.
          if (everConnected) onResync();
          everConnected = true;
          failures = 0;
          onState('live');
        },
      },
    );
  }

  start();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    dispose?.();
  };
}

export interface Live {
  readonly moduleEvents: Channel<ModuleEvent>;
  readonly healthEvents: Channel<ModuleHealthEvent>;
  readonly state: Channel<LiveState>;
  current(): LiveState;
  stop(): void;
}

/**
 * Subscribes with the key: the org's module events (with modules:read), and every org's health
 * reports (with admin). Null when the key may hear neither.
 */
export function startLive(key: string, scopes: readonly string[]): Live | null {
  const modules = scopes.includes('modules:read');
  const admin = scopes.includes('admin');
  if (!modules && !admin) return null;
  const client = createClient({
    url: '/graphql',
    headers: { Authorization: `Bearer ${key}` },
    singleConnection: false,
    credentials: 'omit',
    // keepSubscribed retries, with its own backoff, and not after a 401 or 403.
    retryAttempts: 0,
  });
  const moduleEvents = new Channel<ModuleEvent>();
  const healthEvents = new Channel<ModuleHealthEvent>();
  const state = new Channel<LiveState>();
  const states = new Map<string, LiveState>();
  let overall: LiveState = 'connecting';
  const report = (name: string) => (next: LiveState) => {
    states.set(name, next);
    const all = [...states.values()];
    const combined: LiveState = all.every((s) => s === 'live') ? 'live' : all.includes('offline') ? 'offline' : 'connecting';
    if (combined !== overall) {
      overall = combined;
      state.emit(combined);
    }
  };
  const resync = (orgId: string) => () => moduleEvents.emit({ kind: 'RESYNC', moduleId: null, orgId, at: new Date().toISOString(), module: null });

  const stops: (() => void)[] = [];
  if (modules) {
    stops.push(keepSubscribed<ModuleEvent>(client, MODULE_EVENTS, 'moduleEvents', (e) => moduleEvents.emit(e), report('modules'), resync('')));
  }
  if (admin) {
    stops.push(
      keepSubscribed<ModuleHealthEvent>(
        client,
        MODULE_HEALTH_EVENTS,
        'moduleHealthEvents',
        (e) => healthEvents.emit(e),
        report('health'),
        () => healthEvents.emit({ kind: 'RESYNC', moduleId: null, orgId: '', at: new Date().toISOString(), module: null }),
      ),
    );
  }
  return {
    moduleEvents,
    healthEvents,
    state,
    current: () => overall,
    stop() {
      for (const stop of stops) stop();
      client.dispose();
    },
  };
}
