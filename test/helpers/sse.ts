import type { TestGateway } from './gateway.ts';

/** One server-sent event as graphql-yoga writes it: `event: next|complete`, `data: <json>`. */
export interface SseEvent {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export interface Stream {
  status: number;
  headers: Headers;
  /** Every event received so far, in order (keep-alive comments left out). */
  events: SseEvent[];
  /** The `next` payloads so far. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly results: any[];
  /** Resolves with the n-th `next` payload (0-based) once it arrives; rejects after `ms`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  nth(n: number, ms?: number): Promise<any>;
  /** Resolves once the server ended the stream (after `complete`, or the body's end); rejects after `ms`. */
  ended(ms?: number): Promise<void>;
  readonly done: boolean;
  close(): void;
}

/**
 * A subscription over server-sent events, as a browser's fetch-based client sends it: POST
 * /graphql with `Accept: text/event-stream` and the bearer key. Over the served listener for an
 * `http` gateway or a replica process (a streaming fetch to its origin), through `yoga.fetch` otherwise.
 */
export async function subscribe(
  gw: Pick<TestGateway, 'origin'> & { app?: TestGateway['app'] },
  key: string | null,
  query: string,
  variables?: Record<string, unknown>,
): Promise<Stream> {
  const controller = new AbortController();
  const init: RequestInit = {
    method: 'POST',
    headers: {
      accept: 'text/event-stream',
      'content-type': 'application/json',
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    },
    body: JSON.stringify({ query, ...(variables ? { variables } : {}) }),
    signal: controller.signal,
  };
  if (gw.origin === undefined && gw.app === undefined) throw new Error('subscribe: neither an origin nor an app to send to');
  const response = gw.origin !== undefined ? await fetch(new URL('/graphql', gw.origin), init) : await gw.app!.yoga.fetch('http://localhost/graphql', init);

  const events: SseEvent[] = [];
  const waiters = new Set<() => void>();
  let done = false;
  const wake = () => {
    for (const waiter of waiters) waiter();
  };
  const until = (ready: () => boolean, ms: number, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (ready()) return resolve();
      const check = () => {
        if (!ready()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what} did not come within ${ms} ms; events so far: ${JSON.stringify(events)}`));
      }, ms);
      waiters.add(check);
    });

  const contentType = response.headers.get('content-type') ?? '';
  if (!contentType.startsWith('text/event-stream')) {
    // Refused before streaming (401, 403, 429 ...): the body is one JSON answer.
    const text = await response.text();
    events.push({ event: 'response', data: text === '' ? null : (JSON.parse(text) as unknown) });
    done = true;
  } else if (response.body) {
    void (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
            }
            if (data.length === 0 && event === 'message') continue;
            const text = data.join('\n');
            events.push({ event, data: text === '' ? null : (JSON.parse(text) as unknown) });
            wake();
          }
        }
      } catch {
        // aborted by close(), or the connection ended
      }
      done = true;
      wake();
    })();
  }

  const results = () => events.filter((e) => e.event === 'next').map((e) => e.data as unknown);
  return {
    status: response.status,
    headers: response.headers,
    events,
    get results() {
      return results();
    },
    async nth(n, ms = 10_000) {
      await until(() => results().length > n, ms, `event ${n}`);
      return results()[n];
    },
    ended: (ms = 10_000) => until(() => done, ms, 'the end of the stream'),
    get done() {
      return done;
    },
    close() {
      controller.abort();
    },
  };
}
