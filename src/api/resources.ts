// Raw Envoy resources (proto3 JSON with "@type") served beside the generated ones: the whole set
// at /v1/resources, one resource at /v1/resources/{message type}/{name}. Each is decoded strictly
// against the Envoy protos before anything is stored.
import Type from 'typebox';
import type { FastifyInstance } from 'fastify';
import { removeRaw, rawIdentity, findRawIndex, upsertRaw } from '../model/edit.js';
import { RawResource } from '../model/schema.js';
import type { RawResource as RawResourceT } from '../model/schema.js';
import type { ConfigService } from './config-service.js';
import { sendCommit, writeResult } from './crud.js';
import { errorResponses, invalid, notFound } from './errors.js';
import { checkItemPrecondition, itemTag, parseIfMatch, revisionPrecondition, revisionTag } from './etag.js';

const TypeParam = Type.String({ minLength: 1, description: 'full message name, e.g. envoy.config.cluster.v3.Cluster (or a URL-encoded type URL)' });
const ItemParams = Type.Object({ type: TypeParam, name: Type.String({ minLength: 1 }) });
const List = Type.Array(RawResource);

function typeUrlOf(param: string): string {
  return param.includes('/') ? param : `type.googleapis.com/${param}`;
}

export function resourcesPlugin(svc: ConfigService) {
  return async function resources(app: FastifyInstance): Promise<void> {
    const tag = 'raw resources';
    app.get('/v1/resources', {
      schema: { tags: [tag], summary: 'List raw resources', response: { 200: Type.Object({ revision: Type.Integer(), items: List }), ...errorResponses(401) } },
      handler: async (_req, reply) => {
        const cur = await svc.current();
        reply.header('etag', revisionTag(cur.revision));
        return { revision: cur.revision, items: cur.config.resources };
      },
    });

    app.put('/v1/resources', {
      schema: {
        tags: [tag],
        summary: 'Replace all raw resources',
        description: 'The body is a list of resources in proto3 JSON with "@type". A resource that does not decode strictly is refused with its path, and nothing changes.',
        body: List,
        response: { 200: writeResult(), ...errorResponses(400, 401, 409, 413) },
      },
      handler: async (req, reply) => {
        const list = req.body as RawResourceT[];
        const r = await svc.edit((cur) => ({ ...cur, resources: list }), { precondition: revisionPrecondition(req.headers['if-match']), message: 'PUT /v1/resources' });
        return sendCommit(reply, r, 200);
      },
    });

    app.delete('/v1/resources', {
      schema: { tags: [tag], summary: 'Remove all raw resources', response: { 200: writeResult(), ...errorResponses(401, 409) } },
      handler: async (req, reply) => {
        const r = await svc.edit((cur) => ({ ...cur, resources: [] }), { precondition: revisionPrecondition(req.headers['if-match']), message: 'DELETE /v1/resources', invalidStatus: 409 });
        return sendCommit(reply, r, 200);
      },
    });

    app.get('/v1/resources/:type/:name', {
      schema: { tags: [tag], summary: 'Read one raw resource', params: ItemParams, response: { 200: RawResource, ...errorResponses(401, 404) } },
      handler: async (req, reply) => {
        const { type, name } = req.params as { type: string; name: string };
        const cur = await svc.current();
        const i = findRawIndex(cur.config, typeUrlOf(type), name);
        if (i < 0) throw notFound(`no raw resource ${type} "${name}"`);
        const item = cur.config.resources[i];
        reply.header('etag', itemTag(item));
        return item;
      },
    });

    app.put('/v1/resources/:type/:name', {
      schema: {
        tags: [tag],
        summary: 'Create or replace one raw resource',
        params: ItemParams,
        body: RawResource,
        response: { 200: writeResult(RawResource), 201: writeResult(RawResource), ...errorResponses(400, 401, 409, 413) },
      },
      handler: async (req, reply) => {
        const { type, name } = req.params as { type: string; name: string };
        const typeUrl = typeUrlOf(type);
        const raw = req.body as RawResourceT;
        if (raw['@type'] !== typeUrl) throw invalid('"@type" differs from the path', [{ path: '$["@type"]', message: `expected "${typeUrl}" (from the path), got "${raw['@type']}"` }]);
        const id = rawIdentity(raw, 0);
        if (id && id.name !== name) throw invalid('the resource name differs from the path', [{ path: '$.name', message: `expected "${name}" (from the path), got "${id.name}"` }]);
        const pre = parseIfMatch(req.headers['if-match']);
        let created = false;
        const r = await svc.edit(
          (cur) => {
            const i = findRawIndex(cur, typeUrl, name);
            checkItemPrecondition(pre, i < 0 ? undefined : cur.resources[i], `raw resource ${type} "${name}"`);
            const u = upsertRaw(cur, typeUrl, name, raw);
            created = u.created;
            return u.doc;
          },
          { precondition: pre, message: `PUT /v1/resources/${type}/${name}` },
        );
        return sendCommit(reply, r, created ? 201 : 200, raw);
      },
    });

    app.delete('/v1/resources/:type/:name', {
      schema: { tags: [tag], summary: 'Delete one raw resource', params: ItemParams, response: { 200: writeResult(), ...errorResponses(401, 404, 409) } },
      handler: async (req, reply) => {
        const { type, name } = req.params as { type: string; name: string };
        const typeUrl = typeUrlOf(type);
        const pre = parseIfMatch(req.headers['if-match']);
        const r = await svc.edit(
          (cur) => {
            const i = findRawIndex(cur, typeUrl, name);
            checkItemPrecondition(pre, i < 0 ? undefined : cur.resources[i], `raw resource ${type} "${name}"`);
            const next = removeRaw(cur, typeUrl, name);
            if (!next) throw notFound(`no raw resource ${type} "${name}"`);
            return next;
          },
          { precondition: pre, message: `DELETE /v1/resources/${type}/${name}`, invalidStatus: 409 },
        );
        return sendCommit(reply, r, 200);
      },
    });
  };
}
