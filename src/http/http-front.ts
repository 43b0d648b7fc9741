import type { IncomingMessage, ServerResponse } from 'node:http';
import { handleErrorFromRequestHandler, sendNodeResponse } from '@whatwg-node/server';
import type { YogaServerInstance } from 'graphql-yoga';
import type { Authenticator, Principal } from '../auth/authenticator.ts';
import { bearerToken } from '../auth/plugin.ts';
import type { Logger } from '../logger.ts';
import type { Observability } from './observability.ts';
import { checkVariables } from './request-params.ts';
import type { CacheParams, ResponseCache } from './response-cache.ts';

/**
 * The longest body the front reads. A request the cache can answer is short: its operation text
 * and its variables are each at most 16 KiB (response-cache.ts).
 */
const MAX_FRONT_BODY = 40 * 1024;

const JSON_ANSWER = 'application/json; charset=utf-8';
const GRAPHQL_ANSWER = 'application/graphql-response+json; charset=utf-8';

/**
 * Accept headers the front answers, with the Content-Type Yoga 5.24 answers each with (its last
 * match wins, so the order inside a header matters). Any other header goes to Yoga.
 * test/http-front.test.ts checks every row against Yoga's own answer.
 */
export const ANSWER_TYPES: ReadonlyMap<string | undefined, string> = new Map([
  [undefined, JSON_ANSWER],
  ['*/*', JSON_ANSWER],
  ['application/json', JSON_ANSWER],
  ['application/graphql-response+json', GRAPHQL_ANSWER],
  ['application/graphql-response+json, application/json', GRAPHQL_ANSWER],
  ['application/json, application/graphql-response+json', JSON_ANSWER],
  ['application/graphql-response+json, application/json;q=0.9', GRAPHQL_ANSWER],
  ['application/graphql-response+json, application/json; q=0.9', GRAPHQL_ANSWER],
]);

const JSON_CONTENT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset=utf-8',
]);

const DIGITS = /^\d+$/;
/** A Host header that makes a valid URL (anything else is Yoga's to answer). */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

export interface HttpFrontOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any server context and user context
  yoga: YogaServerInstance<any, any>;
  graphqlEndpoint: string;
  authenticator: Authenticator;
  responseCache: ResponseCache;
  observability: Observability;
  logger: Logger;
  maxBodyBytes: number;
  maxVariableDepth: number;
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpFront {
  listener: RequestListener;
  /** Requests the front has answered itself (the rest went to Yoga). */
  readonly answered: number;
}

/**
 * The gateway's node:http listener: Yoga, with a front that answers a cached query before Yoga
 * builds a Fetch Request for it.
 *
 * Through Yoga a cache hit still costs a Fetch Request and Headers, the plugin chain and a Fetch
 * Response: about 250 µs of CPU per request here, three quarters of it outside the cache. The
 * front answers the same hit for the cost of node:http plus a JSON.parse. It answers only what it
 * can answer exactly as Yoga would, and hands everything else to Yoga:
 * - before reading the body: a POST to the endpoint with a JSON body of known length (at most
 *   40 KiB, and within the body limit), no Origin (CORS is Yoga's), no Content-Encoding, an Accept
 *   header from ANSWER_TYPES, and a key already verified and cached (authentication failures,
 *   unknown keys and their rate limit stay on Yoga's path, so no anonymous body is ever read
 *   here). Otherwise the request goes to Yoga untouched.
 * - after reading it: an object holding only `query`, `variables` and `operationName`, variables
 *   that pass the same checks as on Yoga's path (request-params.ts), and a fresh answer in the
 *   response cache for the key's org and scopes. Otherwise Yoga gets the request with the body
 *   already read.
 * The answer is the same bytes and headers Yoga sends for a hit, and the request log line and
 * metrics are the same (test/http-front.test.ts compares them).
 */
export function createHttpFront(options: HttpFrontOptions): HttpFront {
  const { yoga, graphqlEndpoint, authenticator, responseCache, observability, logger } = options;
  const maxBody = Math.min(MAX_FRONT_BODY, options.maxBodyBytes);

  /** Yoga's node listener, as if the front were not there. */
  const toYoga: RequestListener = (req, res) => void yoga(req, res);

  /** What Yoga's node listener does, for a request whose body has been read here. */
  const toYogaWithBody = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const context = { req, res };
    Promise.resolve()
      .then(() => {
        const request = new yoga.fetchAPI.Request(`http://${req.headers.host}${req.url}`, {
          method: 'POST',
          headers: req.headers as Record<string, string>,
          body: body as Uint8Array<ArrayBuffer>,
        });
        return yoga.fetch(request, context);
      })
      .catch((error: unknown) => handleErrorFromRequestHandler(error, yoga.fetchAPI.Response))
      .then((response) => sendNodeResponse(response, res, req, true))
      .catch((error: unknown) => {
        logger.error('could not answer a request', { error: { message: (error as Error).message } });
        res.destroy();
      });
  };

  /** The principal and media type when the front may read this request's body, else undefined. */
  const admit = (req: IncomingMessage): { principal: Principal; contentType: string } | undefined => {
    if (req.method !== 'POST' || req.url !== graphqlEndpoint) return undefined;
    const { headers } = req;
    if (headers.origin !== undefined || headers['content-encoding'] !== undefined) return undefined;
    const type = headers['content-type'];
    if (type === undefined || !JSON_CONTENT_TYPES.has(type.toLowerCase())) return undefined;
    const length = headers['content-length'];
    if (length === undefined || !DIGITS.test(length) || Number(length) > maxBody) return undefined;
    if (headers.host === undefined || !HOST.test(headers.host)) return undefined;
    const contentType = ANSWER_TYPES.get(headers.accept);
    if (contentType === undefined) return undefined;
    const token = bearerToken(headers.authorization ?? null);
    const principal = token === undefined ? undefined : authenticator.cachedPrincipal(token);
    return principal && { principal, contentType };
  };

  const variableDepth = options.maxVariableDepth;
  /** The parameters of a body the cache may answer, or undefined. */
  const paramsOf = (body: Buffer): CacheParams | undefined => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
    for (const name in parsed) {
      if (name !== 'query' && name !== 'variables' && name !== 'operationName') return undefined;
    }
    const params = parsed as CacheParams;
    if (typeof params.query !== 'string') return undefined;
    const { variables } = params;
    if (variables !== undefined && variables !== null && (typeof variables !== 'object' || Array.isArray(variables))) return undefined;
    if (checkVariables(variables, variableDepth) !== undefined) return undefined;
    return params;
  };

  let answered = 0;
  const listener: RequestListener = (req, res) => {
    const start = performance.now();
    const admitted = admit(req);
    if (admitted === undefined) return toYoga(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A client that goes away mid-body: there is no one to answer, and nothing to clean up.
    req.on('error', () => {});
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const params = paramsOf(body);
      const answer = params && responseCache.answer(admitted.principal, params);
      if (answer === undefined) return toYogaWithBody(req, res, body);
      res.writeHead(200, { 'content-type': admitted.contentType, 'content-length': answer.body.byteLength });
      res.end(answer.body);
      answered++;
      observability.answeredFromCache({ method: 'POST', path: graphqlEndpoint, start, principal: admitted.principal, meta: answer.meta });
    });
  };

  return {
    listener,
    get answered() {
      return answered;
    },
  };
}
