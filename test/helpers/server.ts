import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadConfig } from '../../src/config.ts';
import { captureLogger } from '../../src/logger.ts';
import { startServer, type RunningServer } from '../../src/server.ts';

export interface TestServer {
  server: RunningServer;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** The admin key the first start printed. */
  adminKey: string;
  close(): Promise<void>;
}

/** The listener `npm start` serves (startServer), on 127.0.0.1 and a free port, on a fresh data dir. */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantgate-server-'));
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk) => (printed += chunk));
  const config = loadConfig({
    TENANTGATE_DATA_DIR: dir,
    TENANTGATE_HOST: '127.0.0.1',
    TENANTGATE_PORT: '0',
    TENANTGATE_MASTER_KEY: randomBytes(32).toString('base64'),
    ...env,
  });
  const server = await startServer(config, captureLogger('warn'), out);
  const adminKey = /tgk_[0-9A-Za-z]{49}/.exec(printed)?.[0];
  if (!adminKey) throw new Error('the server printed no admin key');
  return {
    server,
    origin: new URL(server.url).origin,
    adminKey,
    async close() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The bytes as sent: not decompressed (fetch would undo a Content-Encoding). */
  body: Buffer;
}

/** A GET (or HEAD) over node:http that leaves the response as the server sent it. */
export function rawRequest(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
