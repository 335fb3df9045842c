// XdsServer.regroup(): re-running the grouper moves open streams to their new node group, with
// the normal diff-and-push logic against what each client holds. Covers a move while a response
// still awaits its ACK, a move to a group without a snapshot (nothing is sent, no error), streams
// whose group did not change, and a grouper that now refuses the node.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/xds/resources.js';
import { cla, edsCluster, startXdsServer, type RunningServer } from '../support/xds-fixtures.js';
import { XdsTestClient, type SotwResponse } from '../support/xds-client.js';

let srv: RunningServer;
const clients: XdsTestClient[] = [];
/** The grouper reads this table: node id → group (or an Error to refuse the node). */
let table: Record<string, string | Error>;

beforeEach(async () => {
  table = {};
  srv = await startXdsServer({
    grouper: (node) => {
      const g = table[node.id] ?? 'default';
      if (g instanceof Error) throw g;
      return g;
    },
  });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await srv.close();
});

function client(id: string): XdsTestClient {
  const c = new XdsTestClient(srv.address, { node: { id } });
  clients.push(c);
  return c;
}
const ep = (n: number) => [{ address: `10.0.0.${n}`, port: 80 }];
const names = (r: { resources: { name: string }[] }) => r.resources.map((x) => x.name).sort();

describe('XdsServer.regroup', () => {
  it('moves only streams whose group changed; SotW gets the full CDS set and new CLAs', async () => {
    srv.cache.setSnapshot('blue', '1', [edsCluster('common'), cla('common', ep(1)), edsCluster('blue-only'), cla('blue-only', ep(2))]);
    srv.cache.setSnapshot('green', '1', [edsCluster('common'), cla('common', ep(1)), edsCluster('green-only'), cla('green-only', ep(3))]);
    table = { mover: 'blue', stayer: 'blue' };
    const mover = client('mover').sotw();
    const stayer = client('stayer').sotw();
    for (const s of [mover, stayer]) {
      s.subscribe(TypeUrl.Cluster);
      s.ack(await s.nextOf(TypeUrl.Cluster));
      s.subscribe(TypeUrl.ClusterLoadAssignment, ['common', 'blue-only', 'green-only']);
      const eds = await s.nextOf(TypeUrl.ClusterLoadAssignment);
      expect(names(eds)).toEqual(['blue-only', 'common']);
      s.ack(eds);
    }

    table['mover'] = 'green';
    expect(srv.server.regroup()).toBe(1);
    const cds = await mover.nextOf(TypeUrl.Cluster);
    expect(names(cds)).toEqual(['common', 'green-only']); // complete set: blue-only is gone
    mover.ack(cds);
    // Only what the client does not hold: the unchanged "common" CLA is not resent.
    const eds = await mover.nextOf(TypeUrl.ClusterLoadAssignment);
    expect(names(eds)).toEqual(['green-only']);
    mover.ack(eds);
    await mover.expectNone(300);
    await stayer.expectNone(100);
    expect(srv.server.groupsInUse()).toEqual(new Map([['green', 1], ['blue', 1]]));
    expect(srv.server.status().find((s) => s.node?.id === 'mover')?.group).toBe('green');

    // The moved stream now follows its new group only.
    srv.cache.setSnapshot('blue', '2', [edsCluster('common'), cla('common', ep(1)), edsCluster('blue-only'), cla('blue-only', ep(9))]);
    await mover.expectNone(300);
    expect(names(await stayer.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['blue-only']);
    srv.cache.setSnapshot('green', '2', [edsCluster('common'), cla('common', ep(1)), edsCluster('green-only'), cla('green-only', ep(8))]);
    expect(names(await mover.nextOf(TypeUrl.ClusterLoadAssignment))).toEqual(['green-only']);
    expect(srv.server.regroup()).toBe(0);
  });

  it('a move while a response awaits its ACK is planned after the ACK, against what the client then holds', async () => {
    srv.cache.setSnapshot('blue', '1', [edsCluster('a'), edsCluster('b')]);
    srv.cache.setSnapshot('green', '1', [edsCluster('a'), edsCluster('c')]);
    table = { n: 'blue' };
    const d = client('n').delta();
    d.send({ typeUrl: TypeUrl.Cluster, subscribe: ['*'] });
    const first = await d.nextOf(TypeUrl.Cluster);
    expect(names(first)).toEqual(['a', 'b']);
    table['n'] = 'green';
    expect(srv.server.regroup()).toBe(1);
    await d.expectNone(300); // one unacknowledged response per type
    d.ack(first);
    const next = await d.nextOf(TypeUrl.Cluster);
    expect(names(next)).toEqual(['c']);
    expect(next.removed).toEqual(['b']);
    d.ack(next);
    await d.expectNone(300);
  });

  it('a move to a group without a snapshot sends nothing until the group gets one', async () => {
    srv.cache.setSnapshot('blue', '1', [edsCluster('a')]);
    table = { n: 'blue' };
    const s = client('n').sotw();
    s.subscribe(TypeUrl.Cluster);
    s.ack(await s.nextOf(TypeUrl.Cluster));
    table['n'] = 'empty';
    expect(srv.server.regroup()).toBe(1);
    await s.expectNone(300);
    srv.cache.setSnapshot('empty', '3', [edsCluster('a'), edsCluster('z')]);
    const r: SotwResponse = await s.nextOf(TypeUrl.Cluster);
    expect(names(r)).toEqual(['a', 'z']);
    expect(r.versionInfo).toBe('3');
  });

  it('a node the grouper now refuses is ended with its reason; other streams carry on', async () => {
    srv.cache.setSnapshot('default', '1', [edsCluster('a')]);
    const bad = client('bad').sotw();
    const good = client('good').sotw();
    for (const s of [bad, good]) {
      s.subscribe(TypeUrl.Cluster);
      s.ack(await s.nextOf(TypeUrl.Cluster));
    }
    table = { bad: new Error('node "bad" is no longer allowed here') };
    expect(srv.server.regroup()).toBe(0);
    const end = await bad.ended();
    expect(end.code).toBe(3);
    expect(end.details).toContain('node "bad" is no longer allowed here');
    srv.cache.setSnapshot('default', '2', [edsCluster('a'), edsCluster('b')]);
    expect(names(await good.nextOf(TypeUrl.Cluster))).toEqual(['a', 'b']);
  });
});
