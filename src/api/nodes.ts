// GET /v1/nodes: the connected xDS clients as the xDS server sees them (node, group, per type the
// version sent and ACKed, and the last NACK with its message). The API owns this view's shape;
// the control plane maps the server's status into it.
import Type, { type Static } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { errorResponses } from './errors.js';

const At = Type.String({ description: 'ISO 8601' });
export const NodeTypeStatus = Type.Object({
  typeUrl: Type.String(),
  wildcard: Type.Boolean(),
  subscribedNames: Type.Integer({ description: 'explicitly subscribed resource names' }),
  sent: Type.Union([Type.Object({ version: Type.String(), nonce: Type.String(), at: At, resources: Type.Integer() }), Type.Null()]),
  acked: Type.Union([Type.Object({ version: Type.String(), at: At }), Type.Null()]),
  lastNack: Type.Union([Type.Object({ version: Type.String(), message: Type.String(), at: At }), Type.Null()]),
  awaitingAck: Type.Boolean(),
});
export const NodeView = Type.Object({
  streamId: Type.String(),
  protocol: Type.String({ description: 'sotw or delta' }),
  service: Type.String({ description: 'ads, lds, cds, eds, rds, ...' }),
  peer: Type.String(),
  connectedAt: At,
  node: Type.Union([Type.Object({ id: Type.String(), cluster: Type.String(), metadata: Type.Object({}, { additionalProperties: true }), userAgent: Type.Optional(Type.String()) }), Type.Null()]),
  group: Type.Union([Type.String(), Type.Null()]),
  types: Type.Array(NodeTypeStatus),
});
export type NodeView = Static<typeof NodeView>;

export function nodesPlugin(nodes: () => NodeView[]) {
  return async function nodesRoutes(app: FastifyInstance): Promise<void> {
    app.get('/v1/nodes', {
      schema: { tags: ['nodes'], summary: 'Connected xDS clients and their ACK/NACK state', response: { 200: Type.Object({ items: Type.Array(NodeView) }), ...errorResponses(401) } },
      handler: async () => ({ items: nodes() }),
    });
  };
}
