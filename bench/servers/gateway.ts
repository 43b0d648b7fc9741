import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startServer } from '../../src/server.ts';
import { serveChild } from './child.ts';

/**
 * The gateway as `npm start` runs it (startServer: openStore, createApp, node:http), configured
 * only through TENANTGATE_* variables set by bench/run.ts: production mode, logging at warn.
 */
const config = loadConfig(process.env);
const logger = createLogger(config.logLevel);
const server = await startServer(config, logger);
serveChild(server.url, () => server.stop());
