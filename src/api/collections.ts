// Listeners, clusters (with their endpoints) and drop rules: one plugin for the named items of the
// config model.
import Type from 'typebox';
import type { FastifyInstance } from 'fastify';
import { findItem, setEndpoints } from '../model/edit.js';
import { parseIp } from '../model/ip.js';
import { Cluster, DropRule, Endpoint, Listener, Name } from '../model/schema.js';
import type { ConfigService } from './config-service.js';
import { registerCollection, sendCommit, writeResult } from './crud.js';
import { conflict, errorResponses, invalid, notFound } from './errors.js';
import { checkItemPrecondition, itemTag, parseIfMatch } from './etag.js';

export function collectionsPlugin(svc: ConfigService) {
  return async function collections(app: FastifyInstance): Promise<void> {
    registerCollection(app, svc, { collection: 'listeners', segment: 'listeners', noun: 'listener', tag: 'listeners', schema: Listener, nameParam: Name });
    registerCollection(app, svc, { collection: 'clusters', segment: 'clusters', noun: 'cluster', tag: 'clusters', schema: Cluster, nameParam: Name });
    registerCollection(app, svc, {
      collection: 'dropRules',
      segment: 'drop-rules',
      noun: 'drop rule',
      tag: 'drop rules',
      schema: DropRule,
      nameParam: Type.String({ minLength: 1, description: 'the rule name, or its CIDR (URL-encoded) when it has none' }),
    });
    endpointRoutes(app, svc);
  };
}

const ClusterParams = Type.Object({ name: Name });
const EndpointParams = Type.Object({ name: Name, endpoint: Type.String({ description: 'address:port, with IPv6 in brackets: [fd00::1]:9000 (URL-encoded)' }) });
const Endpoints = Type.Array(Endpoint);

function parseEndpointKey(text: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const ip = m ? parseIp(m[1] as string) : undefined;
  if (!m || !ip) throw invalid('bad endpoint in the path', [{ path: '$params.endpoint', message: `expected address:port such as 10.0.0.1:9000 or [fd00::1]:9000, got "${text}"` }]);
  return { address: m[1] as string, port: Number(m[2]) };
}

function sameEndpoint(a: { address: string; port: number }, b: { address: string; port: number }): boolean {
  const x = parseIp(a.address);
  const y = parseIp(b.address);
  return a.port === b.port && !!x && !!y && x.family === y.family && x.bytes.every((v, i) => v === y.bytes[i]);
}

function endpointRoutes(app: FastifyInstance, svc: ConfigService): void {
  const tag = 'clusters';
  app.get('/v1/clusters/:name/endpoints', {
    schema: { tags: [tag], summary: "List a cluster's endpoints", params: ClusterParams, response: { 200: Type.Object({ revision: Type.Integer(), items: Endpoints }), ...errorResponses(401, 404) } },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      const cur = await svc.current();
      const c = findItem(cur.config, 'clusters', name);
      if (!c) throw notFound(`cluster "${name}" does not exist`);
      reply.header('etag', itemTag(c));
      return { revision: cur.revision, items: c.endpoints ?? [] };
    },
  });

  app.put('/v1/clusters/:name/endpoints', {
    schema: {
      tags: [tag],
      summary: "Replace a cluster's endpoints",
      description: 'If-Match takes the ETag of GET /v1/clusters/{name} or of this list (the cluster\'s tag).',
      params: ClusterParams,
      body: Endpoints,
      response: { 200: writeResult(Endpoints), ...errorResponses(400, 401, 404, 409, 413) },
    },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      const endpoints = req.body as Endpoint[];
      const pre = parseIfMatch(req.headers['if-match']);
      const r = await svc.edit(
        (cur) => {
          const c = findItem(cur, 'clusters', name);
          if (!c) throw notFound(`cluster "${name}" does not exist`);
          checkItemPrecondition(pre, c, `cluster "${name}"`);
          return setEndpoints(cur, name, endpoints) ?? cur;
        },
        { precondition: pre, message: `PUT /v1/clusters/${name}/endpoints` },
      );
      reply.header('x-config-revision', String(r.snapshot.revision));
      const c = findItem(r.snapshot.config, 'clusters', name);
      if (c) reply.header('etag', itemTag(c));
      return reply.send({ revision: r.snapshot.revision, changed: r.changed, item: endpoints });
    },
  });

  app.post('/v1/clusters/:name/endpoints', {
    schema: {
      tags: [tag],
      summary: 'Add one endpoint to a cluster',
      params: ClusterParams,
      body: Endpoint,
      response: { 201: writeResult(Endpoint), ...errorResponses(400, 401, 404, 409, 413) },
    },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      const ep = req.body as Endpoint;
      const pre = parseIfMatch(req.headers['if-match']);
      const r = await svc.edit(
        (cur) => {
          const c = findItem(cur, 'clusters', name);
          if (!c) throw notFound(`cluster "${name}" does not exist`);
          checkItemPrecondition(pre, c, `cluster "${name}"`);
          if ((c.endpoints ?? []).some((e) => sameEndpoint(e, ep))) throw conflict(`cluster "${name}" already has endpoint ${ep.address}:${ep.port}`);
          return setEndpoints(cur, name, [...(c.endpoints ?? []), ep]) ?? cur;
        },
        { precondition: pre, message: `POST /v1/clusters/${name}/endpoints` },
      );
      return sendCommit(reply, r, 201, ep);
    },
  });

  app.delete('/v1/clusters/:name/endpoints/:endpoint', {
    schema: { tags: [tag], summary: 'Remove one endpoint from a cluster', params: EndpointParams, response: { 200: writeResult(), ...errorResponses(400, 401, 404, 409) } },
    handler: async (req, reply) => {
      const { name, endpoint } = req.params as { name: string; endpoint: string };
      const key = parseEndpointKey(endpoint);
      const pre = parseIfMatch(req.headers['if-match']);
      const r = await svc.edit(
        (cur) => {
          const c = findItem(cur, 'clusters', name);
          if (!c) throw notFound(`cluster "${name}" does not exist`);
          checkItemPrecondition(pre, c, `cluster "${name}"`);
          const rest = (c.endpoints ?? []).filter((e) => !sameEndpoint(e, key));
          if (rest.length === (c.endpoints ?? []).length) throw notFound(`cluster "${name}" has no endpoint ${endpoint}`);
          return setEndpoints(cur, name, rest) ?? cur;
        },
        { precondition: pre, message: `DELETE /v1/clusters/${name}/endpoints/${endpoint}` },
      );
      return sendCommit(reply, r, 200);
    },
  });
}
