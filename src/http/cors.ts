import type { CORSOptions, Plugin } from 'graphql-yoga';

/** How long a browser may keep a preflight answer (Chromium caps this at 2 hours). */
const PREFLIGHT_MAX_AGE_S = 7200;

/**
 * CORS for the origins in TENANTGATE_CORS_ORIGINS and no others. Keys travel in the Authorization
 * header, never in cookies, so credentials mode is never allowed. A request from any other origin
 * gets no CORS headers at all (the browser then refuses it); with an empty list (the default)
 * only same-origin pages, such as GraphiQL, can call the API.
 *
 * Yoga's own list form is not used: an empty list there allows every origin, and an origin that is
 * not on a longer list still gets `Access-Control-Allow-Credentials: true`.
 */
export function corsFor(origins: readonly string[]): (request: Request) => CORSOptions {
  const allowed = new Set(origins);
  return (request) => {
    const origin = request.headers.get('origin');
    if (origin === null || !allowed.has(origin)) return false;
    return {
      origin,
      credentials: false,
      methods: ['GET', 'POST'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Accept'],
      maxAge: PREFLIGHT_MAX_AGE_S,
    };
  };
}

/**
 * Answers to cross-origin requests differ by Origin once any origin is allowed (one gets CORS
 * headers, another none), so a cache must not hand one origin's answer to another.
 */
export function useVaryOrigin(origins: readonly string[]): Plugin {
  if (origins.length === 0) return {};
  return {
    onResponse({ request, response }) {
      if (!request.headers.has('origin')) return;
      const vary = response.headers.get('vary');
      if (vary === null) response.headers.set('vary', 'Origin');
      else if (!/\borigin\b/i.test(vary)) response.headers.set('vary', `${vary}, Origin`);
    },
  };
}
