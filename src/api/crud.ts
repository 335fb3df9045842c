// CRUD routes for the named collections of the config (listeners, clusters, drop rules): list,
// read, create, replace, delete, each a whole-config commit through ConfigService.
import Type, { type TSchema } from 'typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { dropRuleName } from '../model/config.js';
import { findItem, itemName, removeItem, upsertItem, type Collection } from '../model/edit.js';
import type { Cluster, DropRule, Listener } from '../model/schema.js';
import type { CommitResult, ConfigService } from './config-service.js';
import { conflict, errorResponses, invalid, notFound } from './errors.js';
import { checkItemPrecondition, itemTag, parseIfMatch, revisionPrecondition, revisionTag } from './etag.js';

type Item = Listener | Cluster | DropRule;

export interface CollectionSpec {
  collection: Collection;
  /** URL segment, e.g. "listeners", "drop-rules". */
  segment: string;
  /** Singular noun for messages, e.g. "listener". */
  noun: string;
  tag: string;
  schema: TSchema;
  /** Schema of the :name path parameter. */
  nameParam: TSchema;
}

export function writeResult(item?: TSchema) {
  return Type.Object({
    revision: Type.Integer({ description: 'the config revision after this request' }),
    changed: Type.Boolean({ description: 'false when the request changed nothing (no new revision)' }),
    ...(item ? { item: Type.Optional(item) } : {}),
  });
}

export function sendCommit(reply: FastifyReply, r: CommitResult, status: number, item?: unknown) {
  reply.header('x-config-revision', String(r.snapshot.revision));
  if (item !== undefined) reply.header('etag', itemTag(item));
  const body: { revision: number; changed: boolean; item?: unknown } = { revision: r.snapshot.revision, changed: r.changed };
  if (item !== undefined) body.item = item;
  return reply.status(status).send(body);
}

function nameOf(spec: CollectionSpec, item: Item): string {
  return itemName(spec.collection, item as never);
}

export function registerCollection(app: FastifyInstance, svc: ConfigService, spec: CollectionSpec): void {
  const base = `/v1/${spec.segment}`;
  const Params = Type.Object({ name: spec.nameParam });
  const what = (name: string) => `${spec.noun} "${name}"`;

  app.get(base, {
    schema: {
      tags: [spec.tag],
      summary: `List ${spec.segment}`,
      response: { 200: Type.Object({ revision: Type.Integer(), items: Type.Array(spec.schema) }), ...errorResponses(401) },
    },
    handler: async (_req, reply) => {
      const cur = await svc.current();
      reply.header('etag', revisionTag(cur.revision));
      return { revision: cur.revision, items: cur.config[spec.collection] };
    },
  });

  app.get(`${base}/:name`, {
    schema: { tags: [spec.tag], summary: `Read one ${spec.noun}`, params: Params, response: { 200: spec.schema, ...errorResponses(401, 404) } },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      const cur = await svc.current();
      const item = findItem(cur.config, spec.collection, name);
      if (!item) throw notFound(`${what(name)} does not exist (GET ${base} lists them)`);
      reply.header('etag', itemTag(item));
      reply.header('x-config-revision', String(cur.revision));
      return item;
    },
  });

  app.post(base, {
    schema: {
      tags: [spec.tag],
      summary: `Create a ${spec.noun}`,
      description: 'Fails with 409 if one with this name exists. If-Match: "r<revision>" makes it conditional on the whole config.',
      body: spec.schema,
      response: { 201: writeResult(spec.schema), ...errorResponses(400, 401, 409, 413) },
    },
    handler: async (req, reply) => {
      const item = req.body as Item;
      const name = nameOf(spec, item);
      const r = await svc.edit(
        (cur) => {
          if (findItem(cur, spec.collection, name)) throw conflict(`${what(name)} already exists; PUT ${base}/${encodeURIComponent(name)} replaces it`);
          return upsertItem(cur, spec.collection, name, item as never).doc;
        },
        { precondition: revisionPrecondition(req.headers['if-match']), message: `POST ${base} ${name}` },
      );
      return sendCommit(reply, r, 201, item);
    },
  });

  app.put(`${base}/:name`, {
    schema: {
      tags: [spec.tag],
      summary: `Create or replace a ${spec.noun}`,
      description: 'Idempotent. If-Match takes the ETag of a GET of this item (or "r<revision>", or *).',
      params: Params,
      body: spec.schema,
      response: { 200: writeResult(spec.schema), 201: writeResult(spec.schema), ...errorResponses(400, 401, 409, 413) },
    },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      let item = req.body as Item;
      if (spec.collection === 'dropRules' && (item as DropRule).name === undefined && dropRuleName(item as DropRule) !== name) {
        item = { ...(item as DropRule), name };
      }
      const bodyName = nameOf(spec, item);
      if (bodyName !== name) throw invalid(`the body names ${what(bodyName)} but the path names "${name}"`, [{ path: '$.name', message: `expected "${name}" (the name in the path), got "${bodyName}"` }]);
      const pre = parseIfMatch(req.headers['if-match']);
      let created = false;
      const r = await svc.edit(
        (cur) => {
          checkItemPrecondition(pre, findItem(cur, spec.collection, name), what(name));
          const u = upsertItem(cur, spec.collection, name, item as never);
          created = u.created;
          return u.doc;
        },
        { precondition: pre, message: `PUT ${base}/${name}` },
      );
      return sendCommit(reply, r, created ? 201 : 200, item);
    },
  });

  app.delete(`${base}/:name`, {
    schema: {
      tags: [spec.tag],
      summary: `Delete a ${spec.noun}`,
      description: 'Fails with 409 (naming the references) when other parts of the config still use it.',
      params: Params,
      response: { 200: writeResult(), ...errorResponses(401, 404, 409) },
    },
    handler: async (req, reply) => {
      const { name } = req.params as { name: string };
      const pre = parseIfMatch(req.headers['if-match']);
      const r = await svc.edit(
        (cur) => {
          checkItemPrecondition(pre, findItem(cur, spec.collection, name), what(name));
          const next = removeItem(cur, spec.collection, name);
          if (!next) throw notFound(`${what(name)} does not exist`);
          return next;
        },
        { precondition: pre, message: `DELETE ${base}/${name}`, invalidStatus: 409 },
      );
      return sendCommit(reply, r, 200);
    },
  });
}
