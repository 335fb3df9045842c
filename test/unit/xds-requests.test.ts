import { describe, expect, it } from 'vitest';
import { encodeJson } from '../../src/proto/json.js';
import { checkNames, checkTypeUrl, decodeDeltaRequest, decodeSotwRequest } from '../../src/xds/requests.js';
import { TypeUrl } from '../../src/xds/resources.js';
import { wellFormedProblem } from '../../src/xds/wire.js';

const limits = { maxNamesPerRequest: 3, maxNameLength: 10 };

describe('request decoding', () => {
  it('turns the Node into plain JSON, metadata of every Struct kind included', () => {
    const bytes = encodeJson('envoy.service.discovery.v3.DiscoveryRequest', {
      node: {
        id: 'n1',
        cluster: 'edge',
        metadata: { tier: 'gold', zero: 0, n: 2.5, on: true, off: false, nothing: null, list: [1, 'a'], nested: { k: 'v' } },
        locality: { region: 'eu', zone: 'eu-1a' },
        user_agent_name: 'envoy',
        user_agent_version: '1.31.0',
        client_features: ['envoy.lb.does_not_support_overprovisioning'],
      },
      type_url: TypeUrl.Cluster,
      resource_names: ['a', 'b'],
      response_nonce: 'x.1',
      version_info: '7',
    });
    const r = decodeSotwRequest(bytes);
    expect(r).toMatchObject({
      kind: 'sotw',
      versionInfo: '7',
      node: {
        id: 'n1',
        cluster: 'edge',
        metadata: { tier: 'gold', zero: 0, n: 2.5, on: true, off: false, nothing: null, list: [1, 'a'], nested: { k: 'v' } },
        locality: { region: 'eu', zone: 'eu-1a', subZone: '' },
        userAgentName: 'envoy',
        userAgentVersion: '1.31.0',
        clientFeatures: ['envoy.lb.does_not_support_overprovisioning'],
      },
      resourceNames: ['a', 'b'],
      typeUrl: TypeUrl.Cluster,
      responseNonce: 'x.1',
      errorDetail: null,
    });
  });

  it('a present error_detail is a NACK, even with code 0 and no message', () => {
    const bytes = encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { type_url: TypeUrl.Cluster, error_detail: {} });
    expect(decodeSotwRequest(bytes)).toMatchObject({ errorDetail: { code: 0, message: '' } });
  });

  it('decodes delta requests with initial_resource_versions', () => {
    const bytes = encodeJson('envoy.service.discovery.v3.DeltaDiscoveryRequest', {
      type_url: TypeUrl.ClusterLoadAssignment,
      resource_names_subscribe: ['a'],
      resource_names_unsubscribe: ['b'],
      initial_resource_versions: { a: 'v1' },
    });
    const r = decodeDeltaRequest(bytes);
    expect(r).toMatchObject({ kind: 'delta', subscribe: ['a'], unsubscribe: ['b'], node: null });
    expect(r.kind === 'delta' && [...r.initialResourceVersions]).toEqual([['a', 'v1']]);
  });

  it('reuses the remembered resource_names list when an ACK repeats the same bytes', () => {
    const names = Array.from({ length: 20 }, (_, i) => `cluster-${i}`);
    const first = decodeSotwRequest(encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { type_url: TypeUrl.ClusterLoadAssignment, resource_names: names }));
    if (first.kind !== 'sotw' || !first.namesBytes) throw new Error('expected a decoded request with a names span');
    expect(first.namesReused).toBe(false);
    const memo = new Map([[TypeUrl.ClusterLoadAssignment, { bytes: Buffer.from(first.namesBytes), names: first.resourceNames }]]);
    const ack = decodeSotwRequest(
      encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { version_info: '3', type_url: TypeUrl.ClusterLoadAssignment, resource_names: names, response_nonce: 'n.1' }),
      memo,
    );
    expect(ack).toMatchObject({ namesReused: true, versionInfo: '3', responseNonce: 'n.1', typeUrl: TypeUrl.ClusterLoadAssignment });
    expect(ack.kind === 'sotw' && ack.resourceNames).toBe(first.resourceNames);
    const changed = decodeSotwRequest(encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { type_url: TypeUrl.ClusterLoadAssignment, resource_names: [...names, 'new'] }), memo);
    expect(changed).toMatchObject({ namesReused: false });
    expect(changed.kind === 'sotw' && changed.resourceNames.length).toBe(21);
    const otherType = decodeSotwRequest(encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { type_url: TypeUrl.Cluster, resource_names: names }), memo);
    expect(otherType).toMatchObject({ namesReused: false });
  });

  it('refuses truncated messages instead of clamping them', () => {
    const good = encodeJson('envoy.service.discovery.v3.DiscoveryRequest', { type_url: TypeUrl.Cluster, resource_names: ['abc'] });
    expect(wellFormedProblem(good)).toBeNull();
    const r = decodeSotwRequest(good.subarray(0, good.length - 1));
    expect(r).toMatchObject({ kind: 'undecodable', message: expect.stringMatching(/runs past the end/) });
  });
});

describe('request checks', () => {
  it('names: count, emptiness, length and control characters, with the offending index', () => {
    expect(checkNames(['a', 'b', 'c'], 'resource_names', TypeUrl.Cluster, limits)).toBeNull();
    expect(checkNames(['a', 'b', 'c', 'd'], 'resource_names', TypeUrl.Cluster, limits)).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringContaining('lists 4 names') });
    expect(checkNames(['a', ''], 'resource_names', TypeUrl.Cluster, limits)?.message).toContain('resource_names[1] is empty');
    expect(checkNames(['x'.repeat(11)], 'f', TypeUrl.Cluster, limits)?.message).toContain('11 characters long; the limit is 10');
    expect(checkNames(['a\nb'], 'f', TypeUrl.Cluster, limits)?.message).toContain('control characters');
  });

  it('type URLs must name a message type of the loaded protos', () => {
    expect(checkTypeUrl(TypeUrl.Secret)).toBeNull();
    expect(checkTypeUrl('type.googleapis.com/envoy.nope.Nope')?.message).toContain('unknown type_url "type.googleapis.com/envoy.nope.Nope"');
  });
});
