/**
 * ModuleEventHub on its own, over a store double whose change feed the test drives: what holds a
 * place under the caps, slow readers, an org whose events outrun its reads, a key revoked before
 * its stream started, expiry past a Node timer's range, shutdown.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { captureLogger } from '../src/logger.ts';
import { ModuleEventHub, type ModuleEvent, type StreamOwner } from '../src/repos/module-events.ts';
import type { ApiKeyRow, Change, ModuleRecord, OrgRow, Store } from '../src/store/types.ts';

interface Double {
  store: Store;
  emit(change: Change): void;
  listeners(): number;
  keys: Map<string, Partial<ApiKeyRow>>;
  org: Partial<OrgRow> | undefined;
  /** Module reads wait for this, when set. */
  gate: Promise<void> | undefined;
  reads: number;
}

function double(): Double {
  const listeners = new Set<(change: Change) => void>();
  const state: Double = {
    emit: (change) => {
      for (const listener of listeners) listener(change);
    },
    listeners: () => listeners.size,
    keys: new Map([['k1', { id: 'k1', revokedAt: null, expiresAt: null }]]),
    org: { id: 'org-a', status: 'active' },
    gate: undefined,
    reads: 0,
    store: undefined as unknown as Store,
  };
  state.store = {
    changes: {
      version: () => '0',
      subscribe: (listener: (change: Change) => void) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    forOrg: (orgId: string) => ({
      org: async () => (state.org ? ({ ...state.org, id: orgId } as OrgRow) : undefined),
      apiKeys: { get: async (id: string) => state.keys.get(id) as ApiKeyRow | undefined },
      modules: {
        get: async (moduleId: string) => {
          state.reads += 1;
          if (state.gate) await state.gate;
          return { orgId, moduleId, name: moduleId } as unknown as ModuleRecord;
        },
      },
    }),
  } as unknown as Store;
  return state;
}

const A: StreamOwner = { orgId: 'org-a', keyId: 'k1', expiresAt: null };
const changed = (id: string, orgId = 'org-a'): Change => ({ orgId, kind: 'data', module: { id, event: 'changed' } });
const turn = () => new Promise((resolve) => setImmediate(resolve));

function hub(d: Double, caps: { maxPerOrg?: number; maxTotal?: number } = {}) {
  return new ModuleEventHub({ store: d.store, logger: captureLogger('warn'), maxPerOrg: caps.maxPerOrg ?? 4, maxTotal: caps.maxTotal ?? 100 });
}

/** Starts the stream (a Repeater runs its executor on the first read) and hands back the iterator and its first read. */
function start(events: AsyncIterable<ModuleEvent>) {
  const it = events[Symbol.asyncIterator]();
  const first = it.next();
  return { it, first };
}

const codeOf = (error: unknown) => (error as { extensions?: { code?: string } }).extensions?.code;

afterEach(() => vi.useRealTimers());

describe('ModuleEventHub', () => {
  it('counts a stream from its start: one subscribed but never read (Yoga answered 406) holds no place', async () => {
    const d = double();
    const h = hub(d, { maxPerOrg: 1 });
    h.subscribe(A, 'org');
    h.subscribe(A, 'org');
    expect(h.open).toBe(0);
    const { it, first } = start(h.subscribe(A, 'org'));
    await turn();
    expect(h.open).toBe(1);
    // The cap holds for streams that started: the next is refused when it is asked for...
    expect(() => h.subscribe(A, 'org')).toThrow(/Too many open subscriptions/);
    // ...and one asked for before the first started is refused when it starts.
    const early = hub(d, { maxPerOrg: 1 });
    const one = early.subscribe(A, 'org');
    const two = early.subscribe(A, 'org');
    const a = start(one);
    await turn();
    await expect(start(two).first).rejects.toSatisfy((e) => codeOf(e) === 'RATE_LIMITED');
    expect(early.open).toBe(1);
    await it.return?.();
    await a.it.return?.();
    await first;
    expect(h.open).toBe(0);
    expect(d.listeners()).toBe(0);
  });

  it('gives a slow reader 64 events, then one RESYNC once it has caught up', async () => {
    const d = double();
    const h = hub(d);
    const { it, first } = start(h.subscribe(A, 'org'));
    await turn();
    for (let i = 0; i < 100; i++) d.emit(changed(`m${i}`));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const got: ModuleEvent[] = [(await first).value as ModuleEvent];
    while (got.length < 65) got.push((await it.next()).value as ModuleEvent);
    expect(got.slice(0, 64).map((e) => e.moduleId)).toEqual(Array.from({ length: 64 }, (_, i) => `m${i}`));
    expect(got[64]).toMatchObject({ kind: 'resync', moduleId: null, orgId: 'org-a' });
    await it.return?.();
  });

  it("tells an org's streams to RESYNC when its events outrun its reads (256 waiting), and reads no more", async () => {
    const d = double();
    let release!: () => void;
    d.gate = new Promise((resolve) => (release = resolve));
    const h = hub(d);
    const { it, first } = start(h.subscribe(A, 'org'));
    await turn();
    for (let i = 0; i < 300; i++) d.emit(changed(`m${i}`));
    expect((await first).value).toMatchObject({ kind: 'resync' });
    release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(d.reads).toBe(256);
    await it.return?.();
  });

  it('ends a stream whose key was revoked after authentication but before the stream started', async () => {
    const d = double();
    const h = hub(d);
    const events = h.subscribe(A, 'org');
    d.keys.set('k1', { id: 'k1', revokedAt: new Date().toISOString(), expiresAt: null });
    await expect(start(events).first).rejects.toSatisfy((e) => codeOf(e) === 'UNAUTHENTICATED');
    expect(h.open).toBe(0);
  });

  it('ends a stream when its key expires, even past the longest a Node timer waits', async () => {
    vi.useFakeTimers();
    const d = double();
    const now = Date.now();
    const h = hub(d);
    const day = 86_400_000;
    const { first } = start(h.subscribe({ ...A, expiresAt: now + 30 * day }, 'org'));
    const settled = first.then(
      () => 'value',
      (e: unknown) => codeOf(e),
    );
    await vi.advanceTimersByTimeAsync(25 * day);
    expect(h.open).toBe(1);
    await vi.advanceTimersByTimeAsync(5 * day + 1000);
    expect(await settled).toBe('UNAUTHENTICATED');
    expect(h.open).toBe(0);
  });

  it('answers SERVICE_UNAVAILABLE once closed, not a key error, and ends the open streams', async () => {
    const d = double();
    const h = hub(d);
    const { first } = start(h.subscribe(A, 'org'));
    await turn();
    h.close();
    expect((await first).done).toBe(true);
    let refused: unknown;
    try {
      h.subscribe(A, 'org');
    } catch (error) {
      refused = error;
    }
    expect(codeOf(refused)).toBe('SERVICE_UNAVAILABLE');
  });

  it('refuses past the process-wide cap whichever org asks, with the same message as the per-org one', async () => {
    const d = double();
    const h = hub(d, { maxTotal: 1 });
    const { it } = start(h.subscribe(A, 'org'));
    await turn();
    expect(() => h.subscribe({ orgId: 'org-b', keyId: 'k2', expiresAt: null }, 'org')).toThrow('Too many open subscriptions; retry in 5s');
    await it.return?.();
  });
});
