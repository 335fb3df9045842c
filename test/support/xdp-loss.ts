// Random packet loss on a topology host's interface (ingress), for tests that need TCP
// retransmissions and SACK. This kernel has no sch_netem, so bpf/test/loss_inject.bpf.c drops
// segments at random at XDP (per frame, before GRO), attached through an XDP link pinned under
// the test's pin root.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BpfObject } from '../../src/agent/bpf/object.js';
import { bpfObjectPath } from '../../src/agent/bpf/objects.js';
import { ifIndex, withNetns } from '../../src/agent/bpf/netns.js';
import { attachPinned, type AttachedLink } from '../../src/agent/bpf/link.js';
import type { Host } from './netns.js';

export interface LossInjector {
  /** Segments dropped and seen so far. */
  counts(): { dropped: number; seen: number };
  setProbability(p: number): void;
  remove(): void;
}

export function injectLoss(host: Host, ifname: string, probability: number, pinDir: string): LossInjector {
  const obj = BpfObject.load(bpfObjectPath('test/loss_inject'));
  const cfg = obj.map('loss_cfg');
  const key = Buffer.alloc(4);
  const set = (p: number) => {
    const v = Buffer.alloc(24);
    v.writeUInt32LE(Math.min(0xffffffff, Math.round(p * 2 ** 32)), 0);
    cfg.update(key, v);
  };
  set(probability);
  mkdirSync(pinDir, { recursive: true });
  let link: AttachedLink | undefined;
  try {
    link = withNetns(host.nsPath, () => attachPinned(obj.program('exds_test_loss'), { kind: 'xdp', ifindex: ifIndex(ifname), ifname }, join(pinDir, `loss-${host.name}-${ifname}`)));
  } catch (e) {
    obj.close();
    throw e;
  }
  return {
    counts() {
      const v = cfg.lookup(key)!;
      return { dropped: Number(v.readBigUInt64LE(8)), seen: Number(v.readBigUInt64LE(16)) };
    },
    setProbability: set,
    remove() {
      link?.detach();
      link = undefined;
      obj.close();
    },
  };
}
