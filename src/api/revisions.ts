// The revision history: list, read one, and roll back (which commits the old config as a new
// revision, so versions keep going up).
import Type from 'typebox';
import type { FastifyInstance } from 'fastify';
import { ConfigDocument } from '../model/schema.js';
import type { ConfigService } from './config-service.js';
import { errorResponses, notFound } from './errors.js';
import { revisionPrecondition, revisionTag } from './etag.js';
import { ConfigDiffSchema } from './config.js';

const Summary = Type.Object({ listeners: Type.Integer(), clusters: Type.Integer(), dropRules: Type.Integer(), resources: Type.Integer() });
export const RevisionInfoSchema = Type.Object({
  revision: Type.Integer(),
  createdAt: Type.String({ description: 'ISO 8601' }),
  digest: Type.String({ description: 'hash of the config; equal digests mean equal configs' }),
  message: Type.String({ description: 'the request that made it' }),
  summary: Summary,
});
const Params = Type.Object({ revision: Type.Integer({ minimum: 0 }) });

export function revisionsPlugin(svc: ConfigService) {
  return async function revisions(app: FastifyInstance): Promise<void> {
    const tag = 'revisions';
    app.get('/v1/revisions', {
      schema: {
        tags: [tag],
        summary: 'List revisions, newest first',
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })), before: Type.Optional(Type.Integer({ minimum: 1 })) }),
        response: { 200: Type.Object({ current: Type.Integer(), items: Type.Array(RevisionInfoSchema) }), ...errorResponses(401) },
      },
      handler: async (req) => {
        const q = req.query as { limit?: number; before?: number };
        const cur = await svc.current();
        const opts: { limit?: number; before?: number } = {};
        if (q.limit !== undefined) opts.limit = q.limit;
        if (q.before !== undefined) opts.before = q.before;
        return { current: cur.revision, items: await svc.store.history(opts) };
      },
    });

    app.get('/v1/revisions/:revision', {
      schema: {
        tags: [tag],
        summary: 'Read one revision with its config',
        params: Params,
        response: { 200: Type.Object({ ...RevisionInfoSchema.properties, config: ConfigDocument }), ...errorResponses(401, 404) },
      },
      handler: async (req, reply) => {
        const { revision } = req.params as { revision: number };
        const snap = await svc.store.get(revision);
        if (!snap) throw notFound(`revision ${revision} is not in the history (GET /v1/revisions lists what is kept)`);
        reply.header('etag', revisionTag(snap.revision));
        return snap;
      },
    });

    app.post('/v1/revisions/:revision/rollback', {
      schema: {
        tags: [tag],
        summary: 'Roll back to a revision',
        description: 'Commits the config of that revision as a new revision. If-Match: "r<current>" guards against concurrent changes.',
        params: Params,
        response: { 200: Type.Object({ revision: Type.Integer(), changed: Type.Boolean(), diff: ConfigDiffSchema }), ...errorResponses(401, 404, 409) },
      },
      handler: async (req, reply) => {
        const { revision } = req.params as { revision: number };
        const target = await svc.store.get(revision);
        if (!target) throw notFound(`revision ${revision} is not in the history (GET /v1/revisions lists what is kept)`);
        const r = await svc.edit(() => target.config, { precondition: revisionPrecondition(req.headers['if-match']), message: `rollback to ${revision}`, invalidStatus: 409 });
        reply.header('x-config-revision', String(r.snapshot.revision)).header('etag', revisionTag(r.snapshot.revision));
        return { revision: r.snapshot.revision, changed: r.changed, diff: r.diff };
      },
    });
  };
}
