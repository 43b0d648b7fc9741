import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { getCORSHeadersByRequestAndOptions, sendNodeResponse } from '@whatwg-node/server';
import { GraphQLError, type ExecutionResult } from 'graphql';
import { processRegularResult, type CORSOptions, type YogaServerInstance } from 'graphql-yoga';
import { checkVariables } from '../hardening/request-params.ts';
import type { Logger } from '../logger.ts';
import type { ResponseCache } from './response-cache.ts';
import { clientAddress, createExchange, type Exchange } from './exchange.ts';
import type { Pipeline } from './pipeline.ts';
import { noteResult, type GatewayServerContext } from './use-pipeline.ts';

const JSON_ANSWER = 'application/json';
const GRAPHQL_ANSWER = 'application/graphql-response+json';

/**
 * Accept headers the listener answers itself, with the media type Yoga 5.24 answers each with
 * (its last acceptable match wins, so the order inside a header matters). Any other Accept goes
 * to Yoga, which negotiates in full (event streams, multipart). test/listener.test.ts checks
 * every row against Yoga's own answer.
 */
export const ANSWER_TYPES: ReadonlyMap<string | undefined, string> = new Map([
  [undefined, JSON_ANSWER],
  ['*/*', JSON_ANSWER],
  ['application/json', JSON_ANSWER],
  [GRAPHQL_ANSWER, GRAPHQL_ANSWER],
  [`${GRAPHQL_ANSWER}, application/json`, GRAPHQL_ANSWER],
  [`application/json, ${GRAPHQL_ANSWER}`, JSON_ANSWER],
  [`${GRAPHQL_ANSWER}, application/json;q=0.9`, GRAPHQL_ANSWER],
  [`${GRAPHQL_ANSWER}, application/json; q=0.9`, GRAPHQL_ANSWER],
]);

/** The headers of an answer written from the response cache's bytes, per media type (made once, not per request). */
const CACHED_ANSWER_HEADERS: ReadonlyMap<string, Record<string, string>> = new Map(
  [...new Set(ANSWER_TYPES.values())].map((type) => [type, { 'Content-Type': `${type}; charset=utf-8` }]),
);

/** Content types taken as JSON bodies, as sent: Yoga matches them case-sensitively. */
const JSON_BODIES: ReadonlySet<string> = new Set(['application/json', 'application/json; charset=utf-8', 'application/json;charset=utf-8']);

const DIGITS = /^\d+$/;

/** What is answered when the Host header and request target make no URL. */
const BAD_TARGET = JSON.stringify({
  errors: [{ message: 'The Host header and request target do not form a valid URL', extensions: { code: 'BAD_REQUEST' } }],
});
const INTERNAL = JSON.stringify({ errors: [{ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });

/**
 * Yoga's result processor returns `new fetchAPI.Response(body, init)`; given this in place of
 * the Fetch API it hands back the status, headers and body it chose, without building a
 * Response, so the answer is Yoga's to the byte and costs a JSON.stringify.
 */
class Formatted {
  readonly body: string;
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(body: string | null, init: { status?: number; headers?: Record<string, string> } = {}) {
    this.body = body ?? '';
    this.status = init.status ?? 200;
    this.headers = init.headers ?? {};
  }
}
const FORMAT = { Response: Formatted } as unknown as Parameters<typeof processRegularResult>[1];

function format(result: ExecutionResult, mediaType: string): Formatted {
  return processRegularResult(result, FORMAT, mediaType) as unknown as Formatted;
}

/** Parameters holding only `query`, `variables` and `operationName`, of the types the cache keys by. */
function plainParams(params: Record<string, unknown>): boolean {
  for (const name in params) {
    if (name !== 'query' && name !== 'variables' && name !== 'operationName') return false;
  }
  const { variables } = params;
  return typeof params.query === 'string' && (variables === undefined || variables === null || (typeof variables === 'object' && !Array.isArray(variables)));
}

/** The few members of a Fetch Request that the GraphQL stages read, over node's own headers. */
function requestLike(req: IncomingMessage, url: string): Request {
  const { headers } = req;
  const get = (name: string): string | null => {
    const value = headers[name.toLowerCase() as keyof IncomingHttpHeaders];
    return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
  };
  return { method: req.method, url, headers: { get, has: (name: string) => get(name) !== null } } as unknown as Request;
}

export interface ListenerOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any server and user context
  yoga: YogaServerInstance<any, any>;
  pipeline: Pipeline;
  responseCache: ResponseCache;
  graphqlEndpoint: string;
  cors: (request: Request) => CORSOptions;
  /** Whether any origin is allowed, so that cross-origin answers must say they vary by Origin. */
  varyOrigin: boolean;
  trustProxy: boolean;
  maxBodyBytes: number;
  /** TENANTGATE_MAX_VARIABLE_DEPTH: variables nested deeper are never looked up (Yoga's checks refuse them). */
  maxVariableDepth: number;
  /** Yoga's error mask, for a failure outside every GraphQL error (never a stack or a message). */
  maskError: (error: unknown, message: string) => Error;
  /** Takes request bytes and schema hints out of an answer's errors (hardening/request-echo.ts). */
  sanitizeErrors: (errors: readonly Error[] | undefined, sent: { query?: unknown; variables?: unknown } | undefined) => void;
  logger: Logger;
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface GatewayListener {
  listener: RequestListener;
  /** Requests answered on the listener's own path (the rest went to Yoga). */
  readonly answered: number;
}

/**
 * The node:http listener `npm start` serves: the pipeline (pipeline.ts) without Yoga's Fetch
 * layer for the request nearly every client sends, a JSON POST to the GraphQL endpoint, and Yoga
 * for everything else.
 *
 * Through Yoga, each request first becomes a Fetch Request with Headers, is parsed from a body
 * stream and answered through a Fetch Response: more CPU than executing a small query (README,
 * Performance). Here the same request is read straight from node's parser, authenticated and
 * admitted by the pipeline before its body is read, answered from the response cache or by
 * Yoga's own GraphQL handling (`getResultForParams`: its parameter checks, parse and validation
 * caches, every envelop plugin, execution and masking), formatted by Yoga's own result
 * processor, and recorded by the pipeline. What it does not take (GET, other content types or
 * Accept headers, chunked or encoded bodies, a query string) goes to Yoga as it came; Yoga runs
 * the same stages through usePipeline. A request the listener has authenticated but cannot
 * answer (a body that is not a JSON object, say) is handed over with its body put back and its
 * exchange, so nothing runs twice.
 */
export function createListener(options: ListenerOptions): GatewayListener {
  const { yoga, pipeline, responseCache, graphqlEndpoint, logger } = options;

  const toYoga = (req: IncomingMessage, res: ServerResponse, exchange: Exchange | undefined) => {
    const context: GatewayServerContext & { req: IncomingMessage; res: ServerResponse } = { req, res, exchange };
    Promise.resolve()
      .then(() => yoga.handleNodeRequestAndResponse(req, res, context))
      .catch((error: unknown) => {
        logger.error('request failed outside GraphQL handling', { error: { name: (error as Error).name, message: (error as Error).message } });
        return new yoga.fetchAPI.Response(INTERNAL, { status: 500, headers: { 'content-type': 'application/json; charset=utf-8' } });
      })
      .then((response) => sendNodeResponse(response, res, req, true))
      .catch(() => res.destroy());
  };

  /** The media type to answer with when the listener takes this request, else undefined. */
  const takes = (req: IncomingMessage): string | undefined => {
    if (req.method !== 'POST' || req.url !== graphqlEndpoint) return undefined;
    const { headers } = req;
    if (headers['content-encoding'] !== undefined) return undefined;
    const type = headers['content-type'];
    if (type === undefined || !JSON_BODIES.has(type)) return undefined;
    const length = headers['content-length'];
    if (length === undefined || length === '0' || !DIGITS.test(length) || Number(length) > options.maxBodyBytes) return undefined;
    return ANSWER_TYPES.get(headers.accept);
  };

  const corsHeaders = (request: Request) => getCORSHeadersByRequestAndOptions(request, options.cors(request));

  const write = (res: ServerResponse, exchange: Exchange, cors: Record<string, string> | null | undefined, status: number, headers: Record<string, string>, body: string | Buffer) => {
    const sent: Record<string, string | number> = { ...headers, ...cors, 'content-length': Buffer.byteLength(body) };
    // Answers to cross-origin requests differ by Origin once any origin is allowed (http/cors.ts).
    if (options.varyOrigin && cors !== undefined) sent.Vary = sent.Vary === undefined ? 'Origin' : `${String(sent.Vary)}, Origin`;
    answered++;
    res.writeHead(status, sent);
    res.end(body);
    exchange.status = status;
    pipeline.record(exchange);
  };

  /** Answers with a result (an error, or an execution's), as Yoga's result processor writes it. */
  const writeResult = (
    res: ServerResponse,
    exchange: Exchange,
    cors: Record<string, string> | null | undefined,
    mediaType: string,
    result: ExecutionResult,
    sent?: { query?: unknown; variables?: unknown },
  ) => {
    options.sanitizeErrors(result.errors, sent);
    noteResult(exchange, result);
    const formatted = format(result, mediaType);
    write(res, exchange, cors, formatted.status, formatted.headers, formatted.body);
  };

  /** A refusal or failure before execution, as `{ errors: [...] }`; unexpected errors are masked. */
  const writeError = (
    res: ServerResponse,
    exchange: Exchange,
    cors: Record<string, string> | null | undefined,
    mediaType: string,
    error: unknown,
    sent?: { query?: unknown; variables?: unknown },
  ) => {
    const reported = error instanceof GraphQLError ? error : options.maskError(error, 'Unexpected error.');
    writeResult(res, exchange, cors, mediaType, { errors: [reported as GraphQLError] }, sent);
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, exchange: Exchange, url: string, mediaType: string, cors: Record<string, string> | null | undefined, body: Buffer) => {
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      params = undefined;
    }
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      // Not a JSON object: Yoga's request parser answers it (400, or a batch refusal), reading the
      // body as it came.
      req.unshift(body);
      return toYoga(req, res, exchange);
    }
    // Nothing is left to read: let the request end, so the connection is reused as usual.
    req.resume();
    const graphqlParams = params as { query?: unknown; variables?: unknown; operationName?: unknown };
    const principal = exchange.principal!;
    // Only plain parameters are looked up; anything else executes, and Yoga's parameter checks
    // answer it as they would on any path.
    // Variables are checked first: a key is made of them, and the check bounds their nesting.
    const found =
      plainParams(graphqlParams) && checkVariables(graphqlParams.variables, options.maxVariableDepth) === undefined
        ? responseCache.probe(principal, graphqlParams)
        : undefined;
    if (found?.hit) {
      exchange.cache = 'hit';
      if (found.hit.meta) exchange.operation = found.hit.meta;
      return write(res, exchange, cors, 200, CACHED_ANSWER_HEADERS.get(mediaType)!, found.hit.body);
    }
    const context: GatewayServerContext & { req: IncomingMessage; res: ServerResponse } = { req, res, exchange };
    let result: ExecutionResult;
    try {
      result = (await yoga.getResultForParams({ params: graphqlParams as never, request: requestLike(req, url) }, context)) as ExecutionResult;
    } catch (error) {
      return writeError(res, exchange, cors, mediaType, error, graphqlParams);
    }
    if (found?.miss && exchange.document !== undefined && responseCache.cacheable(found.miss, exchange.document, graphqlParams.operationName)) {
      exchange.cache = 'miss';
      const kept = responseCache.keep(found.miss, result, exchange.operation);
      if (kept !== undefined) return write(res, exchange, cors, 200, CACHED_ANSWER_HEADERS.get(mediaType)!, kept);
    }
    writeResult(res, exchange, cors, mediaType, result, graphqlParams);
  };

  let answered = 0;
  /** Connections whose last answer says `Connection: close` (see fail). */
  const closing = new WeakSet<object>();
  const listener: RequestListener = (req, res) => {
    if (closing.has(req.socket)) return;
    const arrivedAt = performance.now();
    // Yoga's adapter would throw building the URL, and answer with the stack; no request that
    // cannot form one goes further.
    const url = `http://${req.headers.host ?? 'localhost'}${req.url}`;
    if (!URL.canParse(url)) {
      logger.info('request', { method: req.method, status: 400, outcome: 'bad_request' });
      res.writeHead(400, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(BAD_TARGET) });
      res.end(BAD_TARGET);
      return;
    }
    const mediaType = takes(req);
    if (mediaType === undefined) return toYoga(req, res, undefined);
    const exchange = createExchange('POST', req.url!, arrivedAt, clientAddress(req.headers['x-forwarded-for'] as string | undefined, req.socket.remoteAddress, options.trustProxy));
    // undefined for a same-origin request; null when its origin gets no CORS headers. A cache hit
    // without an Origin needs no Request-like object at all.
    const cors = req.headers.origin === undefined ? undefined : corsHeaders(requestLike(req, url));
    const length = Number(req.headers['content-length']);
    // A client that leaves before its answer gives its org's slot back at once.
    if (pipeline.holds) res.once('close', () => pipeline.release(exchange));

    const fail = (error: unknown) => {
      // The body is never read: close the connection rather than drain what an unauthenticated
      // client sends, unless it has all arrived (a request pipelined behind it is then answered).
      // A request parsed after the closing answer could never be answered: it is not run.
      if (!req.complete && req.readableLength < length) {
        res.shouldKeepAlive = false;
        closing.add(req.socket);
      }
      writeError(res, exchange, cors, mediaType, error);
    };
    const readBody = () => {
      // Paused mode, and only up to Content-Length: when the listener hands the request to Yoga
      // after reading, the body goes back into the stream (unshift) before the stream ends.
      const chunks: Buffer[] = [];
      let received = 0;
      const onReadable = () => {
        let chunk: Buffer | null;
        while ((chunk = req.read() as Buffer | null) !== null) {
          chunks.push(chunk);
          received += chunk.length;
        }
        // Node's parser never delivers more than Content-Length; less, until the rest arrives.
        if (received < length) return;
        req.off('readable', onReadable);
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        answer(req, res, exchange, url, mediaType, cors, body).catch((error: unknown) => {
          logger.error('request failed outside GraphQL handling', { error: { name: (error as Error).name, message: (error as Error).message } });
          if (!res.headersSent) writeError(res, exchange, cors, mediaType, error);
          else res.destroy();
        });
      };
      req.on('readable', onReadable);
      // A client that leaves mid-body: Yoga reads what there is and answers as it would.
      const left = () => {
        if (received >= length) return;
        req.off('readable', onReadable);
        if (chunks.length > 0) req.unshift(Buffer.concat(chunks));
        toYoga(req, res, exchange);
      };
      // It may have left already, while a gate kept it waiting.
      if (req.destroyed) left();
      else req.once('close', left);
    };

    let admitted: void | Promise<void>;
    try {
      admitted = pipeline.authenticateAndAdmit(exchange, req.headers.authorization);
    } catch (error) {
      return fail(error);
    }
    if (admitted instanceof Promise) admitted.then(readBody, fail);
    else readBody();
  };

  return {
    listener,
    get answered() {
      return answered;
    },
  };
}
