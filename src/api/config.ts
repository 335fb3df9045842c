// The whole config: GET exports YAML (or JSON) that re-applies to the same state; PUT applies a
// whole document idempotently, and with ?dryRun=true returns the diff and the Envoy resources it
// would serve, committing nothing.
import Type from 'typebox';
import type { FastifyInstance } from 'fastify';
import { configToYaml } from '../model/config-text.js';
import { diffConfig, diffTranslations } from '../model/diff.js';
import { ConfigDocument, NodeSelector, type ConfigDocumentInput } from '../model/schema.js';
import { translate } from '../model/translate.js';
import { validateConfig } from '../model/validate.js';
import { normalizeConfig } from '../model/config.js';
import type { ConfigService } from './config-service.js';
import { errorResponses } from './errors.js';
import { revisionPrecondition, revisionTag } from './etag.js';

const FieldChange = Type.Object({ path: Type.String(), before: Type.Optional(Type.Unknown()), after: Type.Optional(Type.Unknown()) });
export const ConfigDiffSchema = Type.Object({
  changed: Type.Boolean(),
  items: Type.Array(
    Type.Object({
      kind: Type.Enum(['listener', 'cluster', 'dropRule', 'resource']),
      name: Type.String(),
      op: Type.Enum(['added', 'removed', 'changed']),
      fields: Type.Optional(Type.Array(FieldChange)),
    }),
  ),
});

const ApplyResult = Type.Object({
  revision: Type.Integer({ description: 'the revision now current (unchanged on a dry run)' }),
  changed: Type.Boolean(),
  dryRun: Type.Boolean(),
  diff: ConfigDiffSchema,
  resourceChanges: Type.Optional(
    Type.Array(Type.Object({ typeUrl: Type.String(), name: Type.String(), op: Type.Enum(['added', 'removed', 'changed']) }), { description: 'dry run only: Envoy resources that would change' }),
  ),
  resources: Type.Optional(
    Type.Array(
      Type.Object({
        typeUrl: Type.String(),
        name: Type.String(),
        nodeSelectors: Type.Optional(Type.Array(NodeSelector, { description: 'served only to nodes matching one of these; absent: every node' })),
        resource: Type.Object({}, { additionalProperties: true, description: 'proto3 JSON with "@type"' }),
      }),
      { description: 'dry run only: every Envoy resource the config translates to' },
    ),
  ),
});

const Query = Type.Object({
  dryRun: Type.Optional(Type.Boolean({ description: 'validate and show the result without committing' })),
});
const GetQuery = Type.Object({ format: Type.Optional(Type.Enum(['yaml', 'json'])) });

export function configPlugin(svc: ConfigService) {
  return async function config(app: FastifyInstance): Promise<void> {
    app.get('/v1/config', {
      schema: {
        tags: ['config'],
        summary: 'Export the whole config',
        description: 'YAML by default; JSON with ?format=json or Accept: application/json. The ETag is the revision ("r42").',
        querystring: GetQuery,
        response: { 200: { description: 'the config document', content: { 'application/yaml': { schema: Type.String() }, 'application/json': { schema: ConfigDocument } } }, ...errorResponses(401) },
      },
      handler: async (req, reply) => {
        const { format } = req.query as { format?: 'yaml' | 'json' };
        const cur = await svc.current();
        reply.header('etag', revisionTag(cur.revision)).header('x-config-revision', String(cur.revision));
        const wantsJson = format === 'json' || (format === undefined && /application\/json/.test(req.headers.accept ?? ''));
        if (wantsJson) return reply.type('application/json').send(JSON.stringify(cur.config));
        return reply.type('application/yaml').send(configToYaml(cur.config, `ebpf-xds config, revision ${cur.revision} (${cur.createdAt})`));
      },
    });

    app.put('/v1/config', {
      schema: {
        tags: ['config'],
        summary: 'Apply a whole config (YAML or JSON)',
        description:
          'Replaces the whole config; applying the same document again changes nothing. Send Content-Type application/yaml or application/json. If-Match: "r<revision>" refuses the write when someone else changed the config meanwhile.',
        querystring: Query,
        body: ConfigDocument,
        response: { 200: ApplyResult, ...errorResponses(400, 401, 409, 413, 415) },
      },
      handler: async (req, reply) => {
        const { dryRun } = req.query as { dryRun?: boolean };
        const doc = normalizeConfig(req.body as ConfigDocumentInput);
        const pre = revisionPrecondition(req.headers['if-match']);
        if (dryRun) {
          const cur = await svc.current();
          const valid = svc.check(doc);
          const before = validateConfig(cur.config);
          const after = translate(valid);
          const diff = diffConfig(cur.config, valid.config);
          reply.header('x-config-revision', String(cur.revision));
          return {
            revision: cur.revision,
            changed: diff.changed,
            dryRun: true,
            diff,
            resourceChanges: before.ok ? diffTranslations(translate(before), after) : [],
            resources: after.resources.map((r) => {
              const out: { typeUrl: string; name: string; resource: Record<string, unknown>; nodeSelectors?: unknown[] } = {
                typeUrl: r.typeUrl,
                name: r.name,
                resource: { '@type': r.typeUrl, ...r.json },
              };
              if (r.audience) out.nodeSelectors = r.audience;
              return out;
            }),
          };
        }
        const r = await svc.edit(() => doc, { precondition: pre, message: 'PUT /v1/config' });
        reply.header('x-config-revision', String(r.snapshot.revision)).header('etag', revisionTag(r.snapshot.revision));
        return { revision: r.snapshot.revision, changed: r.changed, dryRun: false, diff: r.diff };
      },
    });
  };
}
