import http from 'node:http';
import { createSchema, createYoga } from 'graphql-yoga';
import { close, listen, serveChild } from './child.ts';

/** Baseline: graphql-yoga with its default settings, answering `{ hello }`. */
const yoga = createYoga({
  schema: createSchema({
    typeDefs: 'type Query { hello: String! }',
    resolvers: { Query: { hello: () => 'world' } },
  }),
});
const server = http.createServer(yoga);
serveChild(`${await listen(server)}/graphql`, () => close(server));
