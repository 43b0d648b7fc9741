import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';

/**
 * PostgreSQL for the tests on a machine with no server: PGlite (PostgreSQL compiled to WASM, one
 * backend per instance) behind a wire-protocol listener that node-postgres connects to like any
 * server. One instance per database name; roles, forced RLS, SECURITY DEFINER functions, advisory
 * locks and LISTEN/NOTIFY are PostgreSQL's own.
 *
 * An instance has one session, which this listener shares between its clients, so it gives each
 * client what a backend of its own would have given it:
 * - a client holds the backend from its first message until the backend is idle again (ReadyForQuery
 *   'I'), so transactions and extended-protocol exchanges never interleave (the others queue);
 * - the session runs as the client's role (SET SESSION AUTHORIZATION when another role's client
 *   takes its turn; the session's own user is the superuser), so RLS holds for a request role;
 * - named prepared statements and portals are renamed per client (clients of one store prepare
 *   the same names);
 * - a notification is delivered to the clients that LISTENed on its channel, whoever's exchange
 *   the backend emitted it in.
 * Not emulated: pg_backend_pid()/pg_terminate_backend (one backend for all), query cancellation,
 * passwords (any is accepted), session advisory locks between clients (one session holds them all).
 * @electric-sql/pglite-socket was not used: its multiplexer interleaves clients message by message
 * outside explicit transactions, shares prepared-statement names, serves every client as the
 * superuser and hands a notification to whichever client is being answered.
 */

export interface PgliteServer {
  /** `postgres://role@127.0.0.1:<port>/db`. */
  url(role: string, db: string): string;
  port: number;
  /** A new database (an instance from the initdb snapshot), `postgres` its superuser. */
  createDatabase(name: string): Promise<void>;
  /** Run SQL as the superuser in database `name` (several statements allowed). */
  exec(name: string, sql: string): Promise<void>;
  dropDatabase(name: string): Promise<void>;
  databases(): string[];
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstring = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

function errorResponse(severity: 'FATAL' | 'ERROR', code: string, text: string): Buffer {
  return message('E', Buffer.concat([cstring(`S${severity}`), cstring(`V${severity}`), cstring(`C${code}`), cstring(`M${text}`), Buffer.alloc(1)]));
}

function queryMessage(sql: string): Uint8Array {
  return message('Q', cstring(sql));
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** Reads a NUL-terminated string at `at`: [text, offset after the NUL]. */
function readCString(buf: Buffer, at: number): [string, number] {
  const end = buf.indexOf(0, at);
  return [buf.toString('utf8', at, end), end + 1];
}

/** The backend messages in `out`, each [type, whole message]. */
function splitMessages(out: Uint8Array): Array<[string, Buffer]> {
  const buf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  const parts: Array<[string, Buffer]> = [];
  let at = 0;
  while (at + 5 <= buf.length) {
    const length = buf.readInt32BE(at + 1);
    parts.push([String.fromCharCode(buf[at]!), buf.subarray(at, at + 1 + length)]);
    at += 1 + length;
  }
  return parts;
}

/** Startup parameters that are settings (the rest name the connection). */
const NOT_SETTINGS = new Set(['user', 'database', 'replication', 'options', 'client_encoding']);

let nextClientId = 1;

interface Client {
  id: number;
  socket: net.Socket;
  user: string;
  database: string;
  settings: Array<[string, string]>;
  identity: string;
  pending: Buffer[];
  listening: Set<string>;
  closed: boolean;
}

interface Instance {
  db: PGlite;
  owner: Client | undefined;
  /** Clients with messages waiting for the backend, in arrival order. */
  ready: Client[];
  clients: Set<Client>;
  /** The identity (role and settings) the session runs as now. */
  identity: string;
  /** The backend is mid-exchange or in a transaction for `owner`. */
  busy: boolean;
  pumping: boolean;
  /** Work of the listener itself (startup checks, superuser SQL), run between clients' turns. */
  chain: Promise<unknown>;
}

/** The initdb'd data directory, made once per PGlite version (initdb costs ~10 s here; loading it ~2 s). */
async function snapshot(): Promise<Blob> {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const { version } = JSON.parse(fs.readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as { version: string };
  const file = path.join(os.tmpdir(), `tenantgate-pglite-${version}-initdb.tar`);
  if (!fs.existsSync(file)) {
    const db = await PGlite.create();
    const dump = await db.dumpDataDir('none');
    await db.close();
    const partial = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    fs.writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
    fs.renameSync(partial, file);
  }
  return new Blob([fs.readFileSync(file)]);
}

export async function startPgliteServer(): Promise<PgliteServer> {
  const data = await snapshot();
  const instances = new Map<string, Instance>();
  const sockets = new Set<net.Socket>();

  /** Runs `fn` on the instance's backend between clients' turns. */
  function between<T>(inst: Instance, fn: () => Promise<T>): Promise<T> {
    const run = inst.chain.then(async () => {
      while (inst.busy || inst.pumping) await new Promise((r) => setTimeout(r, 1));
      inst.pumping = true;
      try {
        return await fn();
      } finally {
        inst.pumping = false;
        void pump(inst);
      }
    });
    inst.chain = run.catch(() => {});
    return run;
  }

  async function become(inst: Instance, client: Client): Promise<void> {
    if (inst.identity === client.identity) return;
    const sets = client.settings.map(([k, v]) => `SELECT set_config(${quoteLiteral(k)}, ${quoteLiteral(v)}, false);`).join(' ');
    await inst.db.exec(`SET SESSION AUTHORIZATION postgres; RESET ALL; ${sets} SET SESSION AUTHORIZATION ${quoteIdent(client.user)};`);
    inst.identity = client.identity;
  }

  /** The client's message with its prepared-statement and portal names made its own. */
  function rename(client: Client, msg: Buffer): Buffer {
    const type = String.fromCharCode(msg[0]!);
    const own = (name: string) => (name === '' ? '' : `c${client.id}_${name}`);
    const body = msg.subarray(5);
    switch (type) {
      case 'P': {
        const [name, rest] = readCString(body, 0);
        return message('P', Buffer.concat([cstring(own(name)), body.subarray(rest)]));
      }
      case 'B': {
        const [portal, a] = readCString(body, 0);
        const [statement, b] = readCString(body, a);
        return message('B', Buffer.concat([cstring(own(portal)), cstring(own(statement)), body.subarray(b)]));
      }
      case 'E': {
        const [portal, a] = readCString(body, 0);
        return message('E', Buffer.concat([cstring(own(portal)), body.subarray(a)]));
      }
      case 'D':
      case 'C': {
        const [name, a] = readCString(body, 1);
        return message(type, Buffer.concat([body.subarray(0, 1), cstring(own(name)), body.subarray(a)]));
      }
      case 'Q': {
        const [sql] = readCString(body, 0);
        const listen = /^\s*(UN)?LISTEN\s+("?)([\w$*]+)\2\s*;?\s*$/i.exec(sql);
        if (listen) {
          const channel = listen[2] ? listen[3]! : listen[3]!.toLowerCase();
          if (!listen[1]) client.listening.add(channel);
          else if (channel === '*') client.listening.clear();
          else client.listening.delete(channel);
        }
        return msg;
      }
      default:
        return msg;
    }
  }

  function deliver(inst: Instance, from: Client, out: Uint8Array): 'I' | 'T' | 'E' | undefined {
    let status: 'I' | 'T' | 'E' | undefined;
    const own: Buffer[] = [];
    for (const [type, msg] of splitMessages(out)) {
      if (type === 'A') {
        // [A][len][pid][channel\0][payload\0]: the notifier's pid becomes its client's id.
        const [channel] = readCString(msg, 9);
        const copy = Buffer.from(msg);
        copy.writeInt32BE(from.id, 5);
        for (const c of inst.clients) if (c.listening.has(channel) && !c.closed) c.socket.write(copy);
        continue;
      }
      if (type === 'Z') status = String.fromCharCode(msg[5]!) as 'I' | 'T' | 'E';
      own.push(msg);
    }
    if (own.length > 0 && !from.closed) from.socket.write(Buffer.concat(own));
    return status;
  }

  async function pump(inst: Instance): Promise<void> {
    if (inst.pumping) return;
    inst.pumping = true;
    try {
      for (;;) {
        let client = inst.owner;
        if (!client) {
          client = inst.ready.shift();
          if (!client) break;
          if (client.closed || client.pending.length === 0) continue;
          inst.owner = client;
          try {
            await become(inst, client);
          } catch (error) {
            inst.owner = undefined;
            client.socket.end(errorResponse('FATAL', '28000', (error as Error).message));
            client.closed = true;
            continue;
          }
        }
        if (client.pending.length === 0) break; // mid-exchange or in a transaction: the backend waits for this client
        // All the client has sent, in one call (an extended-protocol query is five messages).
        const batch = Buffer.concat(client.pending.map((m) => rename(client!, m)));
        client.pending = [];
        inst.busy = true;
        const status = deliver(inst, client, await inst.db.execProtocolRaw(batch, { syncToFs: false }));
        if (status === 'I') {
          inst.busy = false;
          inst.owner = undefined;
          if (client.pending.length > 0) inst.ready.push(client);
        }
      }
    } finally {
      inst.pumping = false;
    }
  }

  async function clientGone(inst: Instance, client: Client): Promise<void> {
    if (client.closed && !inst.clients.has(client)) return;
    client.closed = true;
    inst.clients.delete(client);
    inst.ready = inst.ready.filter((c) => c !== client);
    client.pending = [];
    if (inst.owner === client) {
      // Its exchange or transaction ends with it, as a backend's would.
      await inst.db.execProtocolRaw(message('S', Buffer.alloc(0)));
      await inst.db.execProtocolRaw(queryMessage('ROLLBACK'));
      inst.busy = false;
      inst.owner = undefined;
      void pump(inst);
    }
  }

  async function startup(socket: net.Socket, params: Map<string, string>): Promise<Client | undefined> {
    const user = params.get('user') ?? '';
    const database = params.get('database') ?? user;
    const inst = instances.get(database);
    if (!inst) {
      socket.end(errorResponse('FATAL', '3D000', `database "${database}" does not exist`));
      return undefined;
    }
    const role = await between(inst, () => inst.db.query<{ rolcanlogin: boolean; rolsuper: boolean }>('SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1', [user]));
    const row = role.rows[0];
    if (!row || !row.rolcanlogin) {
      socket.end(errorResponse('FATAL', '28000', row ? `role "${user}" is not permitted to log in` : `role "${user}" does not exist`));
      return undefined;
    }
    const settings: Array<[string, string]> = [];
    for (const [k, v] of params) if (!NOT_SETTINGS.has(k)) settings.push([k, v]);
    for (const m of (params.get('options') ?? '').matchAll(/-c\s*([\w.]+)=(\S+)/g)) settings.push([m[1]!, m[2]!]);
    const client: Client = {
      id: nextClientId++,
      socket,
      user,
      database,
      settings,
      identity: JSON.stringify([user, settings]),
      pending: [],
      listening: new Set(),
      closed: false,
    };
    inst.clients.add(client);
    const status = (name: string, value: string) => message('S', Buffer.concat([cstring(name), cstring(value)]));
    socket.write(
      Buffer.concat([
        message('R', int32(0)),
        status('server_version', '18.7'),
        status('server_encoding', 'UTF8'),
        status('client_encoding', 'UTF8'),
        status('DateStyle', 'ISO, MDY'),
        status('integer_datetimes', 'on'),
        status('standard_conforming_strings', 'on'),
        status('TimeZone', 'UTC'),
        status('is_superuser', row.rolsuper ? 'on' : 'off'),
        status('session_authorization', user),
        status('application_name', params.get('application_name') ?? ''),
        message('K', Buffer.concat([int32(client.id), randomBytes(4)])),
        message('Z', Buffer.from('I')),
      ]),
    );
    return client;
  }

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let buffered = Buffer.alloc(0);
    let client: Client | undefined;
    let starting = false;
    const inst = () => (client ? instances.get(client.database) : undefined);
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      const i = inst();
      if (client && i) void clientGone(i, client);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!client) {
        if (starting || buffered.length < 8) return;
        const length = buffered.readInt32BE(0);
        const code = buffered.readInt32BE(4);
        if (buffered.length < length) return;
        const packet = buffered.subarray(0, length);
        buffered = buffered.subarray(length);
        if (code === SSL_REQUEST || code === GSS_REQUEST) {
          socket.write('N');
          return;
        }
        if (code === CANCEL_REQUEST || code !== PROTOCOL_3) {
          socket.destroy();
          return;
        }
        const params = new Map<string, string>();
        let at = 8;
        while (at < packet.length && packet[at] !== 0) {
          const [k, a] = readCString(packet, at);
          const [v, b] = readCString(packet, a);
          params.set(k, v);
          at = b;
        }
        starting = true;
        startup(socket, params).then(
          (c) => {
            client = c;
            starting = false;
            if (c && buffered.length > 0) socket.emit('data', Buffer.alloc(0));
          },
          (error: Error) => socket.end(errorResponse('FATAL', '58000', error.message)),
        );
        return;
      }
      const i = inst();
      if (!i) return;
      let added = false;
      while (buffered.length >= 5) {
        const length = buffered.readInt32BE(1);
        if (buffered.length < 1 + length) break;
        const msg = buffered.subarray(0, 1 + length);
        buffered = buffered.subarray(1 + length);
        if (msg[0] === 0x58 /* X: Terminate */) {
          socket.end();
          void clientGone(i, client);
          return;
        }
        client.pending.push(Buffer.from(msg));
        added = true;
      }
      if (added && i.owner !== client && !i.ready.includes(client)) i.ready.push(client);
      if (added) void pump(i);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  async function dropDatabase(name: string): Promise<void> {
    const inst = instances.get(name);
    if (!inst) return;
    instances.delete(name);
    for (const c of inst.clients) {
      c.closed = true;
      c.socket.destroy();
    }
    await inst.chain;
    await inst.db.close();
  }

  return {
    port,
    url: (role, db) => `postgres://${encodeURIComponent(role)}@127.0.0.1:${port}/${encodeURIComponent(db)}`,
    async createDatabase(name) {
      if (instances.has(name)) throw new Error(`database "${name}" already exists`);
      const db = await PGlite.create({ loadDataDir: data });
      instances.set(name, { db, owner: undefined, ready: [], clients: new Set(), identity: 'postgres', busy: false, pumping: false, chain: Promise.resolve() });
    },
    async exec(name, sql) {
      const inst = instances.get(name);
      if (!inst) throw new Error(`database "${name}" does not exist`);
      await between(inst, async () => {
        inst.identity = '';
        await inst.db.exec(`SET SESSION AUTHORIZATION postgres; ${sql}`);
      });
    },
    dropDatabase,
    databases: () => [...instances.keys()],
    async close() {
      for (const name of [...instances.keys()]) await dropDatabase(name);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
