// Node groups through the real control plane process: a node's group is the set of node selectors
// it matches, so distinct nodes with the same matches share one group (and one snapshot); a config
// change that alters selectors moves open SotW and Delta streams to their new group, and each
// client gets exactly what differs from what it holds. Changes that keep the selectors move nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/xds/resources.js';
import { killAllControlPlanes, startControlPlane, writeTokenFile, type ControlPlaneProcess } from '../support/control-plane-process.js';
import { XdsTestClient, type DeltaResponse, type DeltaStream, type SotwResponse, type SotwStream } from '../support/xds-client.js';

const dir = mkdtempSync(join(tmpdir(), 'exds-cp-groups-'));
let cp: ControlPlaneProcess;
const clients: XdsTestClient[] = [];

beforeAll(async () => {
  cp = await startControlPlane({ dataDir: join(dir, 'data'), tokenFile: writeTokenFile(dir) });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await killAllControlPlanes();
  rmSync(dir, { recursive: true, force: true });
});

const { Listener: LDS, Cluster: CDS, ClusterLoadAssignment: EDS } = TypeUrl;

function client(id: string, rack: string): XdsTestClient {
  const c = new XdsTestClient(`127.0.0.1:${cp.xdsPort}`, { node: { id, cluster: 'mb', metadata: { rack } } });
  clients.push(c);
  return c;
}

type Got<R> = Map<string, R[]>;

/** Takes every response until the stream has been quiet for `quietMs`, ACKing each, by type. */
async function drain<R extends SotwResponse | DeltaResponse>(s: { next(ms: number): Promise<R>; ack(r: R): void }, quietMs = 600): Promise<Got<R>> {
  const got: Got<R> = new Map();
  for (;;) {
    let r: R;
    try {
      r = await s.next(quietMs);
    } catch (err) {
      if (/^no response within/.test((err as Error).message)) return got;
      throw err;
    }
    s.ack(r);
    got.set(r.typeUrl, [...(got.get(r.typeUrl) ?? []), r]);
  }
}

const names = (r: { resources: { name: string }[] } | undefined) => (r ? r.resources.map((x) => x.name).sort() : undefined);
const last = <R>(got: Got<R>, type: string): R | undefined => got.get(type)?.at(-1);

interface NodeRow {
  node: { id: string } | null;
  group: string | null;
  protocol: string;
}
async function groups(): Promise<Record<string, string | null>> {
  const r = await cp.api.request<{ items: NodeRow[] }>('GET', '/v1/nodes');
  return Object.fromEntries(r.body.items.map((n) => [n.node?.id ?? '', n.group]));
}
async function metric(name: string): Promise<number> {
  const r = await cp.api.request<string>('GET', '/metrics');
  const line = r.body.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not exported`);
  return Number(line.split(' ')[1]);
}

const config = (rackAListenerSelector: string, sharedEndpoint: string) => `
listeners:
  - { name: public, address: 0.0.0.0, port: 4444, mode: skb, cluster: shared }
  - { name: rack-a, address: 0.0.0.0, port: 5555, mode: skb, cluster: a-backend, nodeSelector: { labels: { rack: ${rackAListenerSelector} } } }
clusters:
  - { name: shared, endpoints: [${sharedEndpoint}] }
  - { name: a-backend, endpoints: [{ address: 10.0.0.2, port: 9000 }] }
`;

describe('node groups follow node selectors', () => {
  let sotwA: SotwStream; // rack a
  let sotwB: SotwStream; // rack b
  let deltaA: DeltaStream; // rack a
  let deltaB: DeltaStream; // rack b

  it('distinct nodes matching the same selectors share one group and one snapshot', async () => {
    await cp.api.request('PUT', '/v1/config', { contentType: 'application/yaml', body: config('a', '{ address: 10.0.0.1, port: 9000 }') });
    sotwA = client('sotw-a', 'a').sotw();
    sotwB = client('sotw-b', 'b').sotw();
    deltaA = client('delta-a', 'a').delta();
    deltaB = client('delta-b', 'b').delta();
    for (const s of [sotwA, sotwB]) {
      s.subscribe(CDS);
      s.subscribe(EDS, ['shared', 'a-backend']);
      s.subscribe(LDS);
    }
    for (const s of [deltaA, deltaB]) {
      s.send({ typeUrl: CDS, subscribe: ['*'] });
      s.send({ typeUrl: EDS, subscribe: ['shared', 'a-backend'] });
      s.send({ typeUrl: LDS, subscribe: ['*'] });
    }
    const [ga, gb, gda, gdb] = await Promise.all([drain(sotwA), drain(sotwB), drain(deltaA), drain(deltaB)]);
    expect(names(last(ga, LDS))).toEqual(['public', 'rack-a']);
    expect(names(last(ga, CDS))).toEqual(['a-backend', 'shared']);
    expect(names(last(gb, LDS))).toEqual(['public']);
    expect(names(last(gb, CDS))).toEqual(['shared']);
    expect(names(last(gb, EDS))).toEqual(['shared']);
    expect(names(last(gda, LDS))).toEqual(['public', 'rack-a']);
    expect(names(last(gdb, LDS))).toEqual(['public']);
    expect(last(gdb, EDS)?.removed).toEqual(['a-backend']); // subscribed, does not exist for this node

    const g = await groups();
    expect(g['sotw-a']).toBe(g['delta-a']);
    expect(g['sotw-b']).toBe(g['delta-b']);
    expect(g['sotw-b']).toBe('all');
    expect(g['sotw-a']).toMatch(/^sel-/);
    // Four node ids, two snapshots.
    expect(await metric('xds_snapshot_groups')).toBe(2);
  });

  it('a change that keeps the selectors moves no stream; only the changed CLA goes out', async () => {
    const before = await metric('xds_stream_regroups_total');
    const groupsBefore = await groups();
    await cp.api.request('PUT', '/v1/clusters/shared/endpoints', { body: [{ address: '10.0.0.9', port: 9001 }] });
    const [ga, gb, gda, gdb] = await Promise.all([drain(sotwA), drain(sotwB), drain(deltaA), drain(deltaB)]);
    for (const got of [ga, gb]) {
      expect([...got.keys()]).toEqual([EDS]);
      expect(names(last(got, EDS))).toEqual(['shared']);
    }
    for (const got of [gda, gdb]) {
      expect([...got.keys()]).toEqual([EDS]);
      expect(names(last(got, EDS))).toEqual(['shared']);
      expect(last(got, EDS)?.removed).toEqual([]);
    }
    expect(await metric('xds_stream_regroups_total')).toBe(before);
    expect(await groups()).toEqual(groupsBefore);
  });

  it('a selector change moves SotW and Delta streams to their new groups with exactly the difference', async () => {
    const before = await metric('xds_stream_regroups_total');
    const old = await groups();
    // The rack-a listener (and so its cluster) now goes to rack b instead; nothing else changes.
    await cp.api.request('PUT', '/v1/config', { contentType: 'application/yaml', body: config('b', '{ address: 10.0.0.9, port: 9001 }') });
    const [ga, gb, gda, gdb] = await Promise.all([drain(sotwA), drain(sotwB), drain(deltaA), drain(deltaB)]);

    // SotW, rack a, now in "all": complete LDS/CDS sets without the moved pair. SotW cannot delete
    // a CLA, and the one it keeps is unchanged, so no EDS response.
    expect(names(last(ga, LDS))).toEqual(['public']);
    expect(names(last(ga, CDS))).toEqual(['shared']);
    expect(ga.has(EDS)).toBe(false);
    // SotW, rack b: complete sets with the pair, and the CLA it had asked for all along.
    expect(names(last(gb, LDS))).toEqual(['public', 'rack-a']);
    expect(names(last(gb, CDS))).toEqual(['a-backend', 'shared']);
    expect(names(last(gb, EDS))).toEqual(['a-backend']);
    // Delta, rack a: only removals.
    for (const t of [LDS, CDS, EDS]) {
      expect(gda.get(t)?.flatMap((r) => r.resources.map((x) => x.name)), t).toEqual([]);
      expect(gda.get(t)?.flatMap((r) => r.removed), t).toEqual([t === LDS ? 'rack-a' : 'a-backend']);
    }
    // Delta, rack b: only the new resources, nothing it already held.
    for (const t of [LDS, CDS, EDS]) {
      expect(gdb.get(t)?.flatMap((r) => r.resources.map((x) => x.name)), t).toEqual([t === LDS ? 'rack-a' : 'a-backend']);
      expect(gdb.get(t)?.flatMap((r) => r.removed), t).toEqual([]);
    }

    const now = await groups();
    expect(now['sotw-a']).toBe('all');
    expect(now['delta-a']).toBe('all');
    expect(now['sotw-b']).toBe(now['delta-b']);
    expect(now['sotw-b']).toMatch(/^sel-/);
    expect(now['sotw-b']).not.toBe(old['sotw-a']); // another selector, another group
    expect(await metric('xds_stream_regroups_total')).toBe(before + 4);
    // The rack-a group is gone with its last stream.
    expect(await metric('xds_snapshot_groups')).toBe(2);

    // A node connecting now lands in the same group as its peers and gets the same resources.
    const late = client('sotw-b2', 'b').sotw();
    late.subscribe(LDS);
    expect(names(last(await drain(late), LDS))).toEqual(['public', 'rack-a']);
    expect((await groups())['sotw-b2']).toBe(now['sotw-b']);
    expect(await metric('xds_snapshot_groups')).toBe(2);
  });
});
