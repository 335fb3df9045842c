import { describe, expect, it } from 'vitest';
import { decodeAnyToJson, decodeToJson, encodeJson, encodeTypedJson, ProtoJsonError } from '../../src/proto/json.js';

const listener = {
  name: 'kafka',
  address: { socket_address: { address: '0.0.0.0', port_value: 4444 } },
  listener_filters: [
    { name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } },
  ],
  filter_chains: [
    {
      filter_chain_match: { server_names: ['kafka1.server.test'] },
      filters: [
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
            statPrefix: 'kafka1',
            cluster: 'kafka1',
            idle_timeout: '3600.5s',
            max_connect_attempts: 3,
          },
        },
      ],
    },
  ],
};

function problems(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtoJsonError);
    return (e as ProtoJsonError).problems;
  }
  throw new Error('expected a ProtoJsonError');
}

describe('strict proto3 JSON', () => {
  it('round-trips a listener with nested Any, durations, wrappers and both name styles', () => {
    const bytes = encodeJson('envoy.config.listener.v3.Listener', listener);
    const back = decodeToJson('envoy.config.listener.v3.Listener', bytes) as any;
    const tcp = back.filter_chains[0].filters[0].typed_config;
    expect(tcp['@type']).toBe('type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy');
    expect(tcp.stat_prefix).toBe('kafka1');
    expect(tcp.idle_timeout).toBe('3600.5s');
    expect(tcp.max_connect_attempts).toBe(3);
    expect(back.address.socket_address.port_value).toBe(4444);
    // re-encoding the dump gives the same bytes
    expect(Buffer.from(encodeJson('envoy.config.listener.v3.Listener', back))).toEqual(Buffer.from(bytes));
  });

  it('names every unknown field, wrong type and unknown Any type with its path', () => {
    const bad = structuredClone(listener) as any;
    bad.filter_chains[0].filters[0].typed_config.clustr = 'x';
    bad.address.socket_address.port_value = 'eighty';
    bad.listener_filters[0].typed_config['@type'] = 'type.googleapis.com/no.such.Type';
    bad.bogus = 1;
    const ps = problems(() => encodeJson('envoy.config.listener.v3.Listener', bad));
    const paths = ps.map((p) => p.path).sort();
    expect(paths).toEqual(
      [
        '$.address.socket_address.port_value',
        '$.bogus',
        '$.filter_chains[0].filters[0].typed_config.clustr',
        '$.listener_filters[0].typed_config["@type"]',
      ].sort(),
    );
    expect(ps.find((p) => p.path === '$.bogus')?.message).toMatch(/unknown field "bogus" in envoy.config.listener.v3.Listener/);
  });

  it('refuses a doubly-set oneof, a bad enum, a bad duration and out-of-range integers', () => {
    const ps = problems(() =>
      encodeJson('envoy.config.cluster.v3.Cluster', {
        name: 'c',
        type: 'EDS',
        lb_policy: 'FASTEST',
        connect_timeout: '5 seconds',
        per_connection_buffer_limit_bytes: -1,
        cluster_type: { name: 'x' },
      }),
    );
    expect(ps.map((p) => p.path).sort()).toEqual(['$.cluster_type', '$.connect_timeout', '$.lb_policy', '$.per_connection_buffer_limit_bytes'].sort());
  });

  it('encodes typed JSON (raw resources) and dumps Any back with its @type', () => {
    const { typeUrl, bytes } = encodeTypedJson({
      '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
      cluster_name: 'c1',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 80 } } }, load_balancing_weight: 5 }] }],
    });
    const dump = decodeAnyToJson(typeUrl, bytes) as any;
    expect(dump['@type']).toBe(typeUrl);
    expect(dump.endpoints[0].lb_endpoints[0].load_balancing_weight).toBe(5);
    expect(problems(() => encodeTypedJson({ cluster_name: 'x' }))[0]?.path).toBe('$["@type"]');
  });

  it('handles Struct, Value, Timestamp and WKTs inside Any', () => {
    const node = { id: 'n1', metadata: { zone: 'a', labels: { tier: 'edge', n: 3, ok: true, list: [1, 'x', null] } } };
    const back = decodeToJson('envoy.config.core.v3.Node', encodeJson('envoy.config.core.v3.Node', node)) as any;
    expect(back.metadata).toEqual(node.metadata);
    const anyDur = { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '2s' };
    const bytes = encodeJson('google.protobuf.Any', anyDur);
    expect(decodeToJson('google.protobuf.Any', bytes)).toEqual(anyDur);
  });
});
