import v8 from 'node:v8';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';

/**
 * The protocol between bench/run.ts and a server it forks: the child listens on 127.0.0.1 (port 0)
 * and sends `ready` with its URL; `mem` asks for its resident set size; `stop` shuts it down
 * cleanly (so that `--cpu-prof` can write its profile). A child whose parent went away exits.
 */
export type ToChild = { type: 'mem' } | { type: 'cpu' } | { type: 'stop' };
export type FromChild =
  | { type: 'ready'; url: string }
  | { type: 'mem'; rss: number }
  /** CPU time the process has used so far (all threads), in microseconds. */
  | { type: 'cpu'; micros: number };

export function serveChild(url: string, stop: () => Promise<void>): void {
  const send = (message: FromChild) => process.send?.(message);
  process.on('message', (message: ToChild) => {
    if (message.type === 'mem') send({ type: 'mem', rss: process.memoryUsage.rss() });
    if (message.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      send({ type: 'cpu', micros: user + system });
    }
    if (message.type === 'stop') {
      if (process.env.BENCH_DEBUG_MEMORY) {
        const spaces = v8.getHeapSpaceStatistics().map((s) => `${s.space_name}=${(s.space_size / 1e6).toFixed(1)}MB`);
        const mem = Object.entries(process.memoryUsage()).map(([k, v]) => `${k}=${(v / 1e6).toFixed(1)}MB`);
        process.stderr.write(`memory: ${mem.join(' ')}\nheap spaces: ${spaces.join(' ')}\n`);
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc) {
          gc();
          process.stderr.write(`after gc: heapUsed=${(process.memoryUsage().heapUsed / 1e6).toFixed(1)}MB\n`);
        }
      }
      void stop().finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', url });
}

export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
