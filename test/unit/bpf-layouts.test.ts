import { describe, expect, it } from 'vitest';
import { compareWithBtf, readBtfStruct, vmlinuxBtf } from '../../src/agent/bpf/btf.js';
import { FwCounter, FwKey, FwRule, FwStats } from '../../src/agent/bpf/layout-fw.js';
import { SkbPair, SkbSock, SkbStats } from '../../src/agent/bpf/layout-skb.js';
import { SteerKey, SteerStats, SteerVal } from '../../src/agent/bpf/layout-steer.js';
import { BpfObject } from '../../src/agent/bpf/object.js';
import { bpfObjectPath } from '../../src/agent/bpf/objects.js';
import { TCP_INFO_OFFSETS } from '../../src/agent/bpf/socket-syscalls.js';
import type { Codec } from '../../src/agent/bpf/struct-codec.js';

// The TypeScript codecs must lay structs out exactly as clang did for the BPF programs: checked
// against each object's own BTF (opened, not loaded: no privileges needed).
const LAYOUTS: Array<{ object: string; codecs: Array<Codec<unknown>> }> = [
  { object: 'skb_splice', codecs: [SkbPair, SkbSock, SkbStats] as Array<Codec<unknown>> },
  { object: 'steer', codecs: [SteerKey, SteerVal, SteerStats] as Array<Codec<unknown>> },
  { object: 'firewall', codecs: [FwKey, FwRule, FwCounter, FwStats] as Array<Codec<unknown>> },
];

describe('map codecs against the objects’ BTF', () => {
  for (const { object, codecs } of LAYOUTS) {
    it(`${object}: ${codecs.map((c) => c.name).join(', ')}`, () => {
      const obj = BpfObject.open(bpfObjectPath(object));
      try {
        for (const codec of codecs) {
          const s = obj.btfStruct(codec.name);
          expect(compareWithBtf(codec as never, s), codec.name).toEqual([]);
        }
      } finally {
        obj.close();
      }
    });
  }

  it('reports a codec that drifted from the C struct', () => {
    const obj = BpfObject.open(bpfObjectPath('skb_splice'));
    try {
      const s = obj.btfStruct('exds_skb_pair');
      const drifted = { ...SkbPair, fields: SkbPair.fields.map((f) => (f.name === 'state' ? { ...f, offset: 12 } : f)) };
      expect(compareWithBtf(drifted as never, s)).toEqual(['struct exds_skb_pair.state: offset 8 in BTF, 12 in the codec']);
      expect(compareWithBtf(SkbPair as never, undefined)).toEqual(['struct exds_skb_pair is not in the BTF']);
    } finally {
      obj.close();
    }
  });
});

describe('struct tcp_info offsets against the kernel BTF', () => {
  it('reads the fields the splice uses where the running kernel has them', () => {
    const { btf, free } = vmlinuxBtf();
    try {
      const s = readBtfStruct(btf, 'tcp_info')!;
      for (const [name, off] of Object.entries(TCP_INFO_OFFSETS)) {
        expect(s.members.find((m) => m.name === name)?.offset, name).toBe(off);
      }
    } finally {
      free();
    }
  });
});
