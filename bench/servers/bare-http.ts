import http from 'node:http';
import { close, listen, serveChild } from './child.ts';

/** Baseline: node:http answering a fixed JSON body, after reading the request body. */
const body = Buffer.from(JSON.stringify({ data: { hello: 'world' } }));
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
    res.end(body);
  });
});
serveChild(`${await listen(server)}/graphql`, () => close(server));
