// Open operational endpoints: liveness and Prometheus metrics.
import Type from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { ConfigService } from './config-service.js';

export function opsPlugin(svc: ConfigService, registry: Registry) {
  return async function ops(app: FastifyInstance): Promise<void> {
    app.get('/healthz', {
      schema: { tags: ['operations'], summary: 'Liveness', security: [], response: { 200: Type.Object({ status: Type.Literal('ok'), revision: Type.Integer() }) } },
      handler: async () => ({ status: 'ok' as const, revision: (await svc.current()).revision }),
    });
    app.get('/metrics', {
      schema: { tags: ['operations'], summary: 'Prometheus metrics', security: [] },
      handler: async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()),
    });
  };
}
