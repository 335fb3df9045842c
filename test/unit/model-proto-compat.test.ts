// Our EbpfTcpProxyXDP/SKB protos must stay wire-compatible with the research filter's. The fixture
// below is the original pair of messages (fields 1 and 2 only); its `import` of Envoy's
// tcp_proxy.proto is replaced by a stand-in with TcpProxy's real field numbers for the fields used.
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { protoRegistry } from '../../src/proto/registry.js';

const ORIGINAL = `
syntax = "proto3";
package envoy.extensions.filters.network.tcp_proxy.v3;
message TcpProxy { string stat_prefix = 1; string cluster = 2; }
message EbpfTcpProxyXDP {
  TcpProxy tcp_proxy = 1;
  int32 interface_index = 2;
}
message EbpfTcpProxySKB {
  TcpProxy tcp_proxy = 1;
}
`;

const PKG = 'envoy.extensions.filters.network.tcp_proxy.v3';
const original = protobuf.parse(ORIGINAL, { keepCase: true }).root;

describe('EbpfTcpProxy protos are wire-compatible with the original filter', () => {
  it('the registry loads both messages from proto/', () => {
    const xdp = protoRegistry().type(`${PKG}.EbpfTcpProxyXDP`);
    expect(xdp.fields['tcp_proxy']?.id).toBe(1);
    expect(xdp.fields['interface_index']?.id).toBe(2);
    expect(xdp.fields['interface_name']?.id).toBe(3);
    expect(protoRegistry().type(`${PKG}.EbpfTcpProxySKB`).fields['tcp_proxy']?.id).toBe(1);
  });

  it('XDP: bytes from the original decode with ours, and ours decode with the original', () => {
    const origType = original.lookupType(`${PKG}.EbpfTcpProxyXDP`);
    const ours = protoRegistry().type(`${PKG}.EbpfTcpProxyXDP`);
    const fromOriginal = origType.encode(origType.fromObject({ interface_index: 5, tcp_proxy: { cluster: 'kafka1_cluster', stat_prefix: 'kafka1' } })).finish();
    const decoded = ours.toObject(ours.decode(fromOriginal));
    expect(decoded).toEqual({ interface_index: 5, tcp_proxy: { cluster: 'kafka1_cluster', stat_prefix: 'kafka1' } });

    const fromOurs = ours.encode(ours.fromObject({ interface_index: 7, interface_name: 'eth1', tcp_proxy: { cluster: 'c', stat_prefix: 's' } })).finish();
    // The original does not know field 3 and skips it, as proto3 readers do with unknown fields.
    expect(origType.toObject(origType.decode(fromOurs))).toEqual({ interface_index: 7, tcp_proxy: { cluster: 'c', stat_prefix: 's' } });
    // Without the new field the encodings are byte-identical.
    const same = ours.encode(ours.fromObject({ interface_index: 5, tcp_proxy: { stat_prefix: 'kafka1', cluster: 'kafka1_cluster' } })).finish();
    expect(Buffer.from(same).equals(Buffer.from(fromOriginal))).toBe(true);
  });

  it('SKB: round trip in both directions', () => {
    const origType = original.lookupType(`${PKG}.EbpfTcpProxySKB`);
    const ours = protoRegistry().type(`${PKG}.EbpfTcpProxySKB`);
    const a = origType.encode(origType.fromObject({ tcp_proxy: { cluster: 'k', stat_prefix: 'p' } })).finish();
    expect(ours.toObject(ours.decode(a))).toEqual({ tcp_proxy: { cluster: 'k', stat_prefix: 'p' } });
    const b = ours.encode(ours.fromObject({ tcp_proxy: { cluster: 'k', stat_prefix: 'p' } })).finish();
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(origType.toObject(origType.decode(b))).toEqual({ tcp_proxy: { cluster: 'k', stat_prefix: 'p' } });
  });
});
