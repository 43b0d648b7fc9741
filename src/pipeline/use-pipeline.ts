import { getOperationAST, type ExecutionResult, type GraphQLSchema } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Principal } from '../auth/authenticator.ts';
import { unauthenticated } from '../errors.ts';
import type { Context } from '../graphql/context.ts';
import type { Logger } from '../logger.ts';
import { operationMeta, rootFieldsOf } from '../observability/outcomes.ts';
import { clientAddress, createExchange, pathOf, type Exchange } from './exchange.ts';
import type { Pipeline } from './pipeline.ts';

/**
 * What a request carries into Yoga: the node request (Yoga's adapter puts it there), and the
 * exchange when the listener has begun it (a request it hands over). Yoga merges this into the
 * GraphQL context, which is how every stage and resolver reaches the one exchange.
 */
export interface GatewayServerContext {
  req?: { socket?: { remoteAddress?: string } };
  res?: { once(event: 'close', listener: () => void): unknown };
  exchange?: Exchange;
}

export interface UsePipelineOptions {
  pipeline: Pipeline;
  schema: GraphQLSchema;
  graphqlEndpoint: string;
  trustProxy: boolean;
  logger: Logger;
  /** The org-bound part of the GraphQL context for a principal (repositories and the like). */
  contextFor: (principal: Principal, exchange: Exchange) => Omit<Context, 'exchange'>;
}

/** The exchange of a GraphQL context; the pipeline put it there before any resolver could run. */
export function exchangeOf(context: unknown): Exchange | undefined {
  return (context as { exchange?: Exchange } | null)?.exchange;
}

/** Notes on the exchange what the answer says of errors (the first error's code). */
export function noteResult(exchange: Exchange, result: ExecutionResult): void {
  const errors = result.errors;
  if (errors && errors.length > 0) {
    exchange.errors = true;
    const code = errors[0]?.extensions?.code;
    if (typeof code === 'string') exchange.code = code;
  }
}

/**
 * The pipeline on Yoga's path: for the requests the listener hands to Yoga (anything but a plain
 * JSON POST), and for `yoga.fetch`. It runs the same stages as the listener, from the same
 * Pipeline: authenticate and admit before the body is parsed, the org-bound context from the
 * principal, and record once the response is known. A request the listener already
 * authenticated arrives with its exchange and is not authenticated again.
 */
export function usePipeline(options: UsePipelineOptions): Plugin<Context, GatewayServerContext> {
  const { pipeline, graphqlEndpoint, logger } = options;
  const rootFields = rootFieldsOf(options.schema);

  return {
    onRequest({ request, serverContext }) {
      if (serverContext.exchange !== undefined) return;
      const address = clientAddress(request.headers.get('x-forwarded-for'), serverContext.req?.socket?.remoteAddress, options.trustProxy);
      const exchange = createExchange(request.method, request.url, performance.now(), address);
      serverContext.exchange = exchange;
      if (pipeline.holds) serverContext.res?.once('close', () => pipeline.release(exchange));
    },

    onRequestParse({ request, serverContext }) {
      const exchange = serverContext.exchange;
      if (exchange === undefined || exchange.principal !== undefined) return;
      return pipeline.authenticateAndAdmit(exchange, request.headers.get('authorization'));
    },

    onContextBuilding({ context, extendContext }) {
      const exchange = exchangeOf(context);
      const principal = exchange?.principal;
      // Authentication runs before any context is built; reaching here without a principal
      // would be a bug, and is refused rather than served unscoped.
      if (exchange === undefined || principal === undefined) throw unauthenticated('missing');
      extendContext(options.contextFor(principal, exchange) as Partial<Context>);
    },

    // onValidate, not onParse: it sees the parsed (or cached) document without a closure per
    // request, and every operation that parsed is validated, the rejected ones included.
    onValidate({ context, params }) {
      const exchange = exchangeOf(context);
      if (exchange === undefined) return;
      const requested = (context as { params?: { operationName?: unknown } }).params?.operationName;
      exchange.document = params.documentAST;
      exchange.operation = operationMeta(getOperationAST(params.documentAST, typeof requested === 'string' ? requested : undefined), rootFields);
    },

    onResultProcess({ result, serverContext }) {
      const exchange = (serverContext as GatewayServerContext).exchange;
      if (exchange !== undefined && !Array.isArray(result)) noteResult(exchange, result as ExecutionResult);
    },

    onResponse({ request, response, serverContext }) {
      const exchange = serverContext.exchange;
      if (exchange === undefined) {
        // Answered before this plugin's onRequest (nothing is ordered before it today).
        logger.info('request', { method: request.method, path: pathOf(request.url), status: response.status });
        return;
      }
      exchange.status = response.status;
      if (exchange.path === graphqlEndpoint) {
        pipeline.record(exchange);
      } else {
        // Probes, GraphiQL and its assets: logged, not GraphQL requests for the metrics.
        const ms = performance.now() - exchange.arrivedAt;
        logger.info('request', { method: exchange.method, path: exchange.path, status: exchange.status, durationMs: Math.round(ms * 100) / 100 });
      }
    },
  };
}

/**
 * Marks a Yoga plugin whose Yoga-only hooks (onRequest, onRequestParse, onResultProcess,
 * onResponse) the listener's path does not run, because what the plugin does there concerns only
 * requests the listener hands to Yoga, or the listener does the same itself; `reason` says which.
 * test/pipeline.test.ts fails on a plugin with such hooks that carries no mark: anything every
 * request must pass belongs in the pipeline (pipeline.ts).
 */
export const YOGA_PATH_ONLY = Symbol('tenantgate: Yoga path only');

export function yogaPathOnly<P extends object>(reason: string, plugin: P): P {
  return Object.assign(plugin, { [YOGA_PATH_ONLY]: reason });
}
