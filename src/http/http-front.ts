import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendNodeResponse } from '@whatwg-node/server';
import type { YogaServerInstance } from 'graphql-yoga';
import type { Authenticator, Principal } from '../auth/authenticator.ts';
import { bearerToken } from '../auth/plugin.ts';
import type { Logger } from '../logger.ts';
import type { Observability } from './observability.ts';
import { checkVariables } from './request-params.ts';
import type { CacheParams, CachedAnswer, ResponseCache } from './response-cache.ts';

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

/** What the front answers when the Host header and request target make no URL. */
const BAD_TARGET = JSON.stringify({
  errors: [{ message: 'The Host header and request target do not form a valid URL', extensions: { code: 'BAD_REQUEST' } }],
});
const INTERNAL = JSON.stringify({ errors: [{ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });

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
 * Response, several times the lookup itself; the front answers the same hit for the cost of
 * node:http, a JSON.parse and the lookup (README, Performance, has the figures). It answers only
 * what it can answer exactly as Yoga would, and hands everything else to Yoga:
 * - before reading the body: a POST to the endpoint with a JSON body of known length (at most
 *   40 KiB, and within the body limit), no Origin (CORS is Yoga's), no Content-Encoding, an Accept
 *   header from ANSWER_TYPES, and a key already verified and cached (authentication failures,
 *   unknown keys and their rate limit stay on Yoga's path, so no anonymous body is ever read
 *   here). Otherwise the request goes to Yoga untouched.
 * - after reading it: an object holding only `query`, `variables` and `operationName`, variables
 *   that pass the same checks as on Yoga's path (request-params.ts), and a fresh answer in the
 *   response cache for the key's org and scopes. Otherwise the body is put back into the request
 *   stream (before it ends) and Yoga reads the request as it came.
 * The answer is the same bytes and headers Yoga sends for a hit, and the request log line and
 * metrics are the same (test/http-front.test.ts compares them). One deliberate difference, on
 * every path: a Host header and target that make no URL get a 400 here, where Yoga's adapter
 * would answer 500 with the stack.
 */
export function createHttpFront(options: HttpFrontOptions): HttpFront {
  const { yoga, graphqlEndpoint, authenticator, responseCache, observability, logger } = options;
  const maxBody = Math.min(MAX_FRONT_BODY, options.maxBodyBytes);

  /**
   * Writes Yoga's response, as Yoga's node listener does; but an error outside Yoga's own handling
   * becomes a plain 500, never the adapter's default (which sends the stack to the client).
   */
  const send = (req: IncomingMessage, res: ServerResponse, respond: () => Response | Promise<Response>) => {
    Promise.resolve()
      .then(respond)
      .catch((error: unknown) => {
        logger.error('request failed outside GraphQL handling', { error: { name: (error as Error).name, message: (error as Error).message } });
        return new yoga.fetchAPI.Response(INTERNAL, { status: 500, headers: { 'content-type': 'application/json; charset=utf-8' } });
      })
      .then((response) => sendNodeResponse(response, res, req, true))
      .catch(() => res.destroy());
  };

  /** Yoga, as if the front were not there; `arrivedAt` lets the request log count from arrival. */
  const toYoga = (req: IncomingMessage, res: ServerResponse, arrivedAt: number) =>
    send(req, res, () => yoga.handleNodeRequestAndResponse(req, res, { req, res, arrivedAt }));

  /** The principal, answer type and body length when the front may read this request's body, else undefined. */
  const admit = (req: IncomingMessage): { principal: Principal; contentType: string; length: number } | undefined => {
    // With the cache off there is nothing to answer here: the body is Yoga's to read.
    if (!responseCache.enabled || req.method !== 'POST' || req.url !== graphqlEndpoint) return undefined;
    const { headers } = req;
    if (headers.origin !== undefined || headers['content-encoding'] !== undefined) return undefined;
    const type = headers['content-type'];
    // Case as sent: Yoga matches it case-sensitively (and answers 415 to APPLICATION/JSON).
    if (type === undefined || !JSON_CONTENT_TYPES.has(type)) return undefined;
    const length = headers['content-length'];
    if (length === undefined || !DIGITS.test(length) || Number(length) > maxBody || length === '0') return undefined;
    const contentType = ANSWER_TYPES.get(headers.accept);
    if (contentType === undefined) return undefined;
    const token = bearerToken(headers.authorization ?? null);
    const principal = token === undefined ? undefined : authenticator.cachedPrincipal(token);
    return principal && { principal, contentType, length: Number(length) };
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
    // Yoga's adapter would throw building the URL, and answer with the stack; no request that
    // cannot form one goes further.
    if (!URL.canParse(`http://${req.headers.host ?? 'localhost'}${req.url}`)) {
      logger.info('request', { method: req.method, status: 400, outcome: 'bad_request' });
      res.writeHead(400, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(BAD_TARGET) });
      res.end(BAD_TARGET);
      return;
    }
    const admitted = admit(req);
    if (admitted === undefined) return toYoga(req, res, start);
    // Read in paused mode, and only up to Content-Length: on a miss the body goes back into the
    // stream (unshift) before the stream ends, and Yoga reads it as if nothing had been here.
    const chunks: Buffer[] = [];
    let received = 0;
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = req.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        received += chunk.length;
      }
      // Node's parser never delivers more than Content-Length; less, until the rest arrives. The
      // body goes back (below) before anything reads past its end, so the stream has not ended.
      if (received < admitted.length) return;
      req.off('readable', onReadable);
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      let answer: CachedAnswer | undefined;
      try {
        const params = paramsOf(body);
        answer = params && responseCache.answer(admitted.principal, params);
      } catch {
        // Whatever failed (the store, say) fails again on Yoga's path, which answers it properly.
        answer = undefined;
      }
      if (answer === undefined) {
        req.unshift(body);
        return toYoga(req, res, start);
      }
      // Let the request end (nothing is left to read), so the connection is reused as usual.
      req.resume();
      res.writeHead(200, { 'Content-Type': admitted.contentType, 'content-length': answer.body.byteLength });
      res.end(answer.body);
      answered++;
      try {
        observability.answeredFromCache({ method: 'POST', path: graphqlEndpoint, start, principal: admitted.principal, meta: answer.meta });
      } catch (error) {
        logger.warn('could not record a request', { error: { name: (error as Error).name, message: (error as Error).message } });
      }
    };
    req.on('readable', onReadable);
    // A client that goes away mid-body: Yoga reads what there is and logs the request as it would.
    req.once('close', () => {
      if (received >= admitted.length) return;
      req.off('readable', onReadable);
      toYoga(req, res, start);
    });
  };

  return {
    listener,
    get answered() {
      return answered;
    },
  };
}
