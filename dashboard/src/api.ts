/**
 * The dashboard's one way to the gateway: a POST of JSON to /graphql with the key as a bearer
 * token, the same public API every other client uses.
 */

export interface GraphQLErrorShape {
  message: string;
  path?: readonly (string | number)[];
  extensions?: { code?: string };
}

/** Why a request gave no data: what a panel shows instead of its content. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    /** The scope the key lacks, for FORBIDDEN. */
    readonly scope?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const SCOPE_IN_MESSAGE = /needs the (\S+) scope/;

/** The first error of an answer as an ApiError; `scope` names what the panel needs, when the gateway's message does not. */
export function toApiError(error: GraphQLErrorShape, scope?: string): ApiError {
  const code = error.extensions?.code ?? 'ERROR';
  if (code === 'FORBIDDEN') {
    const needed = SCOPE_IN_MESSAGE.exec(error.message)?.[1] ?? scope;
    const text = needed ? `This key lacks the ${needed} scope.` : `This key may not do that: ${error.message}`;
    return new ApiError(text, code, needed);
  }
  if (code === 'UNAUTHENTICATED') return new ApiError('The API key is not valid (revoked, expired or mistyped).', code);
  if (code === 'ORG_SUSPENDED') return new ApiError('This org is suspended: its keys are refused until an operator resumes it.', code);
  if (code === 'RATE_LIMITED') return new ApiError('Too many requests for this org just now; try again in a moment.', code);
  return new ApiError(error.message, code);
}

export interface Answer<T> {
  data: T | null;
  errors: GraphQLErrorShape[];
}

/** Sends one operation; network failures and non-JSON answers become an ApiError. */
export async function post<T>(key: string, query: string, variables?: Record<string, unknown>): Promise<Answer<T>> {
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('The gateway could not be reached.', 'NETWORK');
  }
  let body: { data?: T | null; errors?: GraphQLErrorShape[] };
  try {
    body = (await response.json()) as typeof body;
  } catch {
    throw new ApiError(`The gateway answered HTTP ${response.status} without a GraphQL result.`, 'NETWORK');
  }
  return { data: body.data ?? null, errors: body.errors ?? [] };
}

/**
 * Sends one operation and answers its data, or throws the first error as an ApiError. For panels
 * that read one root field, or mutations, where any error means no result.
 */
export async function gql<T>(key: string, query: string, variables?: Record<string, unknown>, scope?: string): Promise<T> {
  const { data, errors } = await post<T>(key, query, variables);
  const first = errors[0];
  if (first) throw toApiError(first, scope);
  if (data === null) throw new ApiError('The gateway answered without data.', 'ERROR');
  return data;
}

export function messageOf(error: unknown): string {
  return error instanceof ApiError ? error.message : 'Something went wrong in the dashboard.';
}
