// The REST API as a fastify app: one plugin per resource group, TypeBox schemas beside the routes
// driving validation, serialization and the OpenAPI document at /docs. Bodies may be JSON or YAML.
// Every /v1 route needs the bearer token; /healthz, /metrics and /docs are open.
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifySchemaCompiler } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { parseConfigText } from '../model/config-text.js';
import { schemaProblems } from '../model/schema-errors.js';
import type { Store } from '../store/store.js';
import type { Logger } from '../util/log.js';
import { requireToken } from './auth.js';
import { collectionsPlugin } from './collections.js';
import { ConfigService } from './config-service.js';
import { configPlugin } from './config.js';
import { ApiError, installErrorHandler } from './errors.js';
import { nodesPlugin, type NodeView } from './nodes.js';
import { opsPlugin } from './ops.js';
import { resourcesPlugin } from './resources.js';
import { revisionsPlugin } from './revisions.js';

export interface ApiOptions {
  store: Store;
  /** Bearer token required on every /v1 route. */
  token: string;
  /** Metrics registry served at /metrics; API request metrics are registered on it too. */
  registry: Registry;
  logger: Logger;
  /** The connected xDS clients for GET /v1/nodes. */
  nodes?: () => NodeView[];
  /** Largest accepted request body in bytes (default 4 MiB); larger gets 413. */
  bodyLimit?: number;
}

export const DEFAULT_BODY_LIMIT = 4 * 1024 * 1024;
const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

/** Validation with our problem messages and paths; query and path parameters are coerced first. */
const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const root = httpPart === 'body' ? '$' : httpPart === 'querystring' ? '$query' : httpPart === 'params' ? '$params' : `$${httpPart ?? ''}`;
  return (value: unknown) => {
    const v = httpPart === 'body' ? value : Value.Convert(schema, value);
    const problems = schemaProblems(schema, v, root);
    if (problems.length === 0) return { value: v };
    const what = httpPart === 'body' ? 'request body' : httpPart === 'querystring' ? 'query string' : httpPart === 'params' ? 'path' : httpPart;
    return { error: new ApiError(400, 'invalid_request', `the ${what} is invalid (${problems.length} problem${problems.length === 1 ? '' : 's'})`, problems) };
  };
};

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    loggerInstance: opts.logger.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit,
    // Names in paths may be URL-encoded CIDRs ("10.0.0.0%2F8").
    routerOptions: { maxParamLength: 1024 },
  });
  app.setValidatorCompiler(validatorCompiler);
  installErrorHandler(app);

  // Our own JSON parser for messages that say where the JSON broke. Prototype keys need no special
  // care: JSON.parse makes them plain own keys, and every schema refuses unknown keys.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    const parsed = parseConfigText(body as string, 'json');
    if (parsed.ok) done(null, parsed.value);
    else done(new ApiError(400, 'invalid_json', 'the request body is not valid JSON', parsed.problems), undefined);
  });
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    const parsed = parseConfigText(body as string, 'yaml');
    if (parsed.ok) done(null, parsed.value);
    else done(new ApiError(400, 'invalid_yaml', 'the request body is not valid YAML', parsed.problems), undefined);
  });

  const requests = new Counter({
    name: 'ebpf_xds_api_requests_total',
    help: 'REST API requests by route, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [opts.registry],
  });
  const latency = new Histogram({
    name: 'ebpf_xds_api_request_duration_seconds',
    help: 'REST API request latency by route and method',
    labelNames: ['route', 'method'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [opts.registry],
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    latency.observe({ route, method: req.method }, reply.elapsedTime / 1000);
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'ebpf-xds control plane API', version: '1', description: 'Config model, raw Envoy resources, revisions and connected nodes. See docs/api.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  const svc = new ConfigService(opts.store);
  await app.register(opsPlugin(svc, opts.registry));
  await app.register(async (v1) => {
    v1.addHook('onRequest', requireToken(opts.token));
    await v1.register(collectionsPlugin(svc));
    await v1.register(configPlugin(svc));
    await v1.register(resourcesPlugin(svc));
    await v1.register(revisionsPlugin(svc));
    await v1.register(nodesPlugin(opts.nodes ?? (() => [])));
  });
  await app.ready();
  return app;
}
