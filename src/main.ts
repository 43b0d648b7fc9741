import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { DataPathError } from './store/data-dir.ts';

/** Process entry: load config, open and migrate the store, listen, stop cleanly on a signal. */
export async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tenantgate: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  // graphql-js picks its instanceof checks when it is first loaded: in production the plain ones
  // (its development checks cost about 5% of a request). Never 'development': Yoga would then
  // add stacks to errors. So the server is loaded only now, after NODE_ENV is settled.
  if (config.production && process.env.NODE_ENV === undefined) process.env.NODE_ENV = 'production';
  const { startServer } = await import('./server.ts');
  const logger = createLogger(config.logLevel);
  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    const message = error instanceof ConfigError || (error as NodeJS.ErrnoException).code ? (error as Error).message : String(error);
    process.stderr.write(`tenantgate: could not start: ${message}\n`);
    // A data path that cannot be used is a configuration error, like a bad variable: exit code 2.
    process.exit(error instanceof DataPathError ? 2 : 1);
  }
  const running = server;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      running.stop().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error('shutdown failed', { error });
          process.exit(1);
        },
      );
    });
  }
}

const isEntry = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntry) await main();
