import { DrizzleQueryError } from 'drizzle-orm/errors';
import { StoreError, type StoreErrorKind } from '../errors.ts';

/** Node's socket errors of a server that is not there or went away. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL's SQLSTATEs (pg puts them on `code`) grouped into kinds. A statement cancelled by
 * statement_timeout (57014) is `busy`: the server is there and answered, but the work did not fit
 * the time a request may spend in the database, which a retry later may (a server that cannot
 * be reached is `unavailable`, and the connection errors below say so).
 */
function kindOfSqlState(code: string): StoreErrorKind {
  if (code.startsWith('08')) return 'unavailable'; // connection exception
  if (code === '57P01' || code === '57P02' || code === '57P03' || code === '57P05') return 'unavailable'; // shutdown, crash, starting, idle session timeout
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014' || code === '53300') return 'busy'; // serialization, deadlock, lock not available, statement timeout, too many connections
  if (code === '53100') return 'full'; // disk full
  if (code === '25006') return 'readonly'; // read-only transaction (a standby, or default_transaction_read_only)
  if (code === '58030') return 'io';
  if (code === 'XX001' || code === 'XX002') return 'corrupt'; // data or index corrupted
  if (code.startsWith('23')) return 'constraint';
  return 'other';
}

/**
 * The messages node-postgres and pg-pool give connection failures that carry no code: a pool
 * that could not connect in time, a socket closed under a query, a client used after its end.
 */
const CONNECTION_MESSAGES = /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|Client was closed|Cannot use a pool after calling end|not queryable/i;

/** A PostgreSQL or connection failure as a StoreError; anything else (a callback's own error, such as a refused revocation) unchanged. */
export function toStoreError(error: unknown): unknown {
  if (error instanceof StoreError) return error;
  if (!(error instanceof Error)) return error;
  // drizzle wraps the driver's error in a DrizzleQueryError whose message holds the query and
  // its parameters (a sealed credential, a key's hash): the driver's own error is what we keep.
  if (error instanceof DrizzleQueryError) return error.cause instanceof Error ? toStoreError(error.cause) : new StoreError('other', 'drizzle', 'query failed');
  const code = (error as { code?: unknown }).code;
  // Socket codes first: EPIPE has the shape of a SQLSTATE (five capitals) but is a lost connection.
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return new StoreError('unavailable', code, error);
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return new StoreError(kindOfSqlState(code), code, error);
  if (CONNECTION_MESSAGES.test(error.message)) return new StoreError('unavailable', 'connection', error);
  // pg's own protocol errors have no code; anything from the driver's module is still the store's failure.
  if ((error as { severity?: unknown }).severity !== undefined) return new StoreError('other', 'postgres', error);
  return error;
}
