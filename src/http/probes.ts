import { createHash, timingSafeEqual } from 'node:crypto';
import type { Plugin } from 'graphql-yoga';
import { bearerToken } from '../pipeline/pipeline.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/types.ts';
import type { Metrics } from '../observability/metrics.ts';

export interface ProbeOptions {
  store: Store;
  logger: Logger;
  /** Serve GET /metrics from these metrics; undefined turns the endpoint off (404). */
  metrics: Metrics | undefined;
  /** When set, /metrics wants `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

function pathIs(url: string, path: string): boolean {
  // Cheap test first: this runs on every request.
  if (!url.endsWith(path) && !url.includes(`${path}?`)) return false;
  const scheme = url.indexOf('://');
  const start = url.indexOf('/', scheme < 0 ? 0 : scheme + 3);
  return start >= 0 && url.startsWith(path, start) && (url.length === start + path.length || url[start + path.length] === '?');
}

/**
 * GET /ready (503 while the store cannot take writes, see Store.check) and GET /metrics, answered
 * before authentication. Yoga's useReadinessCheck is not used: it parses the URL and runs a
 * URLPattern on every request.
 *
 * /metrics needs no API key: its labels hold no org, key or operation argument, and an API key
 * would give the scraper tenant powers. It can be turned off (TENANTGATE_METRICS=false) or given
 * its own bearer token (TENANTGATE_METRICS_TOKEN) where the port is reachable by others.
 */
export function useProbes({ store, logger, metrics, metricsToken }: ProbeOptions): Plugin {
  const expected = metricsToken === undefined ? undefined : digest(metricsToken);
  let wasReady = true;

  const ready = async (endResponse: (response: Response) => void, fetchAPI: { Response: typeof Response }) => {
    const check = await store.check().catch((error: unknown) => ({ ok: false as const, reason: String(error) }));
    if (check.ok !== wasReady) {
      wasReady = check.ok;
      if (check.ok) logger.info('store is ready again');
      else logger.warn('store is not ready', { reason: check.reason });
    }
    endResponse(
      new fetchAPI.Response(JSON.stringify({ status: check.ok ? 'ready' : 'unavailable' }), {
        status: check.ok ? 200 : 503,
        headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
      }),
    );
  };

  const scrape = async (request: Request, endResponse: (response: Response) => void, fetchAPI: { Response: typeof Response }) => {
    if (expected) {
      const presented = bearerToken(request.headers.get('authorization'));
      if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
        endResponse(
          new fetchAPI.Response('metrics need the metrics token\n', {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="tenantgate-metrics"', 'content-type': 'text/plain; charset=utf-8' },
          }),
        );
        return;
      }
    }
    endResponse(
      new fetchAPI.Response(await metrics!.render(), {
        status: 200,
        headers: { 'content-type': metrics!.contentType, 'cache-control': 'no-store' },
      }),
    );
  };

  return {
    // Not async: a GraphQL request passes through with no promise made here.
    onRequest({ request, endResponse, fetchAPI }) {
      if (pathIs(request.url, '/ready')) return ready(endResponse, fetchAPI);
      if (metrics && pathIs(request.url, '/metrics')) return scrape(request, endResponse, fetchAPI);
      return undefined;
    },
  };
}
