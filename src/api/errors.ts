// The API's one error shape, and the mapping of every failure (ours, fastify's, the store's) onto
// it: 400 with each failing path, 401, 404, 409, 413, 415. Nothing else leaks out.
import Type, { type Static } from 'typebox';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { Problem } from '../model/schema-errors.js';
import { RevisionConflictError, RevisionNotFoundError } from '../store/store.js';

export const ProblemSchema = Type.Object({ path: Type.String(), message: Type.String() }, { description: 'one failing value: its JSON path and what is wrong' });

export const ErrorBody = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String({ description: 'HTTP reason phrase' }),
    code: Type.String({ description: 'stable machine-readable code, e.g. invalid_config' }),
    message: Type.String(),
    problems: Type.Optional(Type.Array(ProblemSchema)),
  },
  { description: 'every error response' },
);
export type ErrorBody = Static<typeof ErrorBody>;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
};

/** A response lists at most this many problems, so a huge bad document gets a bounded answer. */
const MAX_PROBLEMS = 200;

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly problems?: Problem[],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function invalid(message: string, problems: Problem[]): ApiError {
  return new ApiError(400, 'invalid_request', message, problems);
}

export function notFound(message: string): ApiError {
  return new ApiError(404, 'not_found', message);
}

export function conflict(message: string, problems?: Problem[]): ApiError {
  return new ApiError(409, 'conflict', message, problems);
}

/** Error responses for OpenAPI: which statuses a route can return. */
export function errorResponses(...codes: number[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(codes.map((c) => [c, ErrorBody]));
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ApiError | Error, request, reply) => {
    const body = toErrorBody(err);
    if (body.statusCode >= 500) request.log.error({ err }, 'request failed');
    else request.log.info({ statusCode: body.statusCode, code: body.code, message: body.message }, 'request refused');
    if (body.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="ebpf-xds"');
    return reply.status(body.statusCode).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const body = toErrorBody(notFound(`no route ${request.method} ${request.url.split('?')[0]}; see /docs for the API`));
    return reply.status(404).send(body);
  });
}

export function toErrorBody(err: unknown): ErrorBody {
  let statusCode = 500;
  let code = 'internal';
  let message = 'internal error';
  let problems: Problem[] | undefined;
  if (err instanceof ApiError) {
    ({ statusCode, code, message } = err);
    problems = err.problems;
  } else if (err instanceof RevisionConflictError) {
    statusCode = 409;
    code = 'revision_conflict';
    message = err.message;
  } else if (err instanceof RevisionNotFoundError) {
    statusCode = 404;
    code = 'not_found';
    message = err.message;
  } else if (err instanceof Error) {
    const fe = err as FastifyError;
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      statusCode = fe.statusCode;
      code = fe.code ? fe.code.toLowerCase() : 'bad_request';
      message = fe.message;
      if (statusCode === 413) message = `the request body is larger than the limit (${fe.message.replace(/^.*?(\d+).*$/, '$1') || 'see --api-body-limit'} bytes); split the change or raise --api-body-limit`;
      if (statusCode === 400) problems = [{ path: '$', message: fe.message }];
      if (statusCode === 415) message = `${fe.message}; send application/json or application/yaml`;
    } else {
      message = `internal error: ${err.message}`;
    }
  }
  const body: ErrorBody = { statusCode, error: REASONS[statusCode] ?? 'Error', code, message };
  if (problems && problems.length > MAX_PROBLEMS) {
    body.message += `; the first ${MAX_PROBLEMS} of ${problems.length} problems are listed`;
    problems = problems.slice(0, MAX_PROBLEMS);
  }
  if (problems && problems.length > 0) body.problems = problems;
  return body;
}
