import { NoSchemaIntrospectionCustomRule } from 'graphql';
import { createYoga, useReadinessCheck, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { Authenticator } from './auth/authenticator.ts';
import { useAuth } from './auth/plugin.ts';
import type { Config } from './config.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import type { Context } from './graphql/context.ts';
import { schema } from './graphql/schema.ts';
import type { Logger } from './logger.ts';
import { forOrg, systemRepos, type Services } from './repos/index.ts';
import type { Store } from './store/types.ts';

export type AppConfig = Pick<
  Config,
  'production' | 'introspection' | 'graphiql' | 'authFailuresPerMinute' | 'keyCacheTtlMs' | 'trustProxy' | 'limits'
>;

export interface AppOptions {
  store: Store;
  secretBox: SecretBox;
  config: AppConfig;
  logger: Logger;
}

export interface App {
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  services: Services;
  /** Flush buffered writes (key last-used times). The store is the caller's to close. */
  close(): Promise<void>;
}

function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/** The gateway as a fetch handler: tests call `app.yoga.fetch`, main.ts serves it over HTTP. */
export function createApp({ store, secretBox, config, logger }: AppOptions): App {
  const authenticator = new Authenticator(store, { cacheTtlMs: config.keyCacheTtlMs, logger });
  const services: Services = { store, secretBox, authenticator };
  const system = systemRepos(store, authenticator);

  const yoga = createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    graphiql: config.graphiql ? { title: 'tenantgate', headers: '{\n  "Authorization": "Bearer tgk_..."\n}' } : false,
    // isDev false: never attach stacks or original messages, whatever NODE_ENV says.
    maskedErrors: { isDev: false },
    batching: false,
    logging: {
      debug: (...args) => logger.debug(String(args[0])),
      info: (...args) => logger.info(String(args[0])),
      warn: (...args) => logger.warn(String(args[0])),
      error: (...args) => logger.error(String(args[0]), args[1] instanceof Error ? { error: args[1] } : undefined),
    },
    plugins: [
      useReadinessCheck({
        endpoint: '/ready',
        check: async () => (await store.check()).ok,
      }),
      useAuth({
        authenticator,
        failuresPerMinute: config.authFailuresPerMinute,
        trustProxy: config.trustProxy,
        logger,
        contextFor: (principal) => ({ repos: forOrg(services, principal.orgId), system }),
      }),
      ...(config.introspection ? [] : [useNoIntrospection()]),
    ],
  });

  return {
    yoga,
    services,
    close: () => authenticator.close(),
  };
}
