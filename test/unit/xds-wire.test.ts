import { describe, expect, it } from 'vitest';
import { protoRegistry } from '../../src/proto/registry.js';
import { clusterEdsServiceName, TypeUrl } from '../../src/xds/resources.js';
import { concatFields, deltaResourceField, DeltaResponseField, DiscoveryResponseField, outlineMessage, readStringField, scanFields, sotwResourceField, stringField } from '../../src/xds/wire.js';
import { cla, edsCluster } from '../support/xds-fixtures.js';
import { encodeJson } from '../../src/proto/json.js';

type Plain = Record<string, unknown>;

describe('wire encoding of discovery responses', () => {
  it('a concatenated DiscoveryResponse decodes with the Envoy protos', () => {
    const c1 = edsCluster('c1');
    const c2 = edsCluster('c2', { serviceName: 'svc2' });
    const buf = concatFields([
      stringField(DiscoveryResponseField.versionInfo, '42'),
      sotwResourceField(c1.typeUrl, c1.bytes),
      sotwResourceField(c2.typeUrl, c2.bytes),
      stringField(DiscoveryResponseField.typeUrl, TypeUrl.Cluster),
      stringField(DiscoveryResponseField.nonce, 'n-1'),
    ]);
    const m = protoRegistry().type('envoy.service.discovery.v3.DiscoveryResponse').decode(buf) as unknown as Plain;
    expect(m['version_info']).toBe('42');
    expect(m['type_url']).toBe(TypeUrl.Cluster);
    expect(m['nonce']).toBe('n-1');
    const anys = m['resources'] as Array<{ type_url: string; value: Uint8Array }>;
    expect(anys.map((a) => a.type_url)).toEqual([TypeUrl.Cluster, TypeUrl.Cluster]);
    expect(Buffer.from(anys[1]!.value).equals(Buffer.from(c2.bytes))).toBe(true);
  });

  it('a concatenated DeltaDiscoveryResponse decodes, with versions and removed names', () => {
    const e = cla('c1', [{ address: '10.0.0.1', port: 80 }]);
    const any = protoRegistry().type('google.protobuf.Any').encode({ type_url: e.typeUrl, value: e.bytes }).finish();
    const buf = concatFields([
      stringField(DeltaResponseField.systemVersionInfo, '7'),
      deltaResourceField('c1', 'v-abc', any),
      stringField(DeltaResponseField.typeUrl, e.typeUrl),
      stringField(DeltaResponseField.removedResources, 'gone-1'),
      stringField(DeltaResponseField.removedResources, 'gone-2'),
      stringField(DeltaResponseField.nonce, 'n-9'),
    ]);
    const m = protoRegistry().type('envoy.service.discovery.v3.DeltaDiscoveryResponse').decode(buf) as unknown as Plain;
    expect(m['system_version_info']).toBe('7');
    expect(m['removed_resources']).toEqual(['gone-1', 'gone-2']);
    expect(m['nonce']).toBe('n-9');
    const res = (m['resources'] as Plain[])[0]!;
    expect(res['name']).toBe('c1');
    expect(res['version']).toBe('v-abc');
    expect(Buffer.from((res['resource'] as { value: Uint8Array }).value).equals(Buffer.from(e.bytes))).toBe(true);
  });

  it('encodes long fields with multi-byte varint lengths', () => {
    const long = 'x'.repeat(70_000);
    const f = stringField(1, long);
    expect(readStringField(f, 1)).toBe(long);
  });

  it('scanFields rejects truncated input instead of reading past it', () => {
    const f = stringField(1, 'hello');
    expect(() => [...scanFields(f.subarray(0, f.length - 1))]).toThrow(/truncated/);
  });
});

describe('clusterEdsServiceName', () => {
  it('uses eds_cluster_config.service_name, else the cluster name, and nothing for non-EDS clusters', () => {
    expect(clusterEdsServiceName(edsCluster('a').bytes)).toBe('a');
    expect(clusterEdsServiceName(edsCluster('b', { serviceName: 'svc-b' }).bytes)).toBe('svc-b');
    const staticCluster = encodeJson('envoy.config.cluster.v3.Cluster', { name: 's', type: 'STATIC', connect_timeout: '1s' });
    expect(clusterEdsServiceName(staticCluster)).toBeUndefined();
  });
});

describe('outlineMessage', () => {
  it('finds the span of a repeated field, whether it is contiguous, and a string field', () => {
    const names = concatFields([stringField(3, 'a'), stringField(3, 'x'.repeat(300)), stringField(3, 'c')]);
    const msg = concatFields([stringField(1, 'v1'), names, stringField(4, 'type/x'), stringField(5, 'n')]);
    const o = outlineMessage(msg, 3, 4);
    expect(o.problem).toBeNull();
    expect(o.span).toMatchObject({ contiguous: true });
    expect(Buffer.from(msg.subarray(o.span!.start, o.span!.end)).equals(names)).toBe(true);
    expect(Buffer.from(o.text!).toString()).toBe('type/x');
    const split = concatFields([stringField(3, 'a'), stringField(1, 'v'), stringField(3, 'b')]);
    expect(outlineMessage(split, 3, 4).span).toMatchObject({ contiguous: false });
  });

  it('reports truncation, bad wire types and field number 0', () => {
    const f = stringField(1, 'x'.repeat(200));
    expect(outlineMessage(f.subarray(0, 10)).problem).toMatch(/runs past the end/);
    expect(outlineMessage(f.subarray(0, 2)).problem).toMatch(/truncated length/);
    expect(outlineMessage(Buffer.from([0x0f])).problem).toMatch(/unsupported wire type 7/);
    expect(outlineMessage(Buffer.from([0x02, 0x00])).problem).toMatch(/field number 0/);
    expect(outlineMessage(Buffer.from([0x08, 0xff])).problem).toMatch(/truncated varint/);
  });
});
