import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Topology } from '../support/netns.js';
import { runClient, startServer } from '../support/traffic.js';

// Proves the shared topology and traffic helpers: routed client → router → server, both ways.
describe('test support: namespaces and traffic', () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await Topology.create({
      label: 'sup',
      hosts: ['client', 'mb', 'server'],
      links: [
        { a: 'client', b: 'mb' },
        { a: 'mb', b: 'server' },
      ],
      gateways: { client: 'mb', server: 'mb' },
      routers: ['mb'],
    });
  });
  afterAll(async () => topo?.destroy());

  it('moves bytes both ways over IPv4 and IPv6 with equal hashes', async () => {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const srv = await startServer(topo.host('server'), { send: 5_000_000 });
      const [cli] = await runClient(topo.host('client'), { host: topo.iface('server', 'mb')[family], port: srv.port, send: 7_000_000 });
      const [s] = await srv.done;
      expect(cli!.sent).toBe(7_000_000);
      expect(s!.recv).toBe(7_000_000);
      expect(s!.recvSha).toBe(cli!.sentSha);
      expect(cli!.recvSha).toBe(s!.sentSha);
      expect(cli!.recv).toBe(5_000_000);
    }
  });
});
