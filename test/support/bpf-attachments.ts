// Counts the BPF programs attached at the hooks the agent uses, by asking the kernel at each hook
// (BPF_PROG_QUERY for TCX, sk_lookup and the cgroup's sock_release; `ip link` for XDP), so a test can prove
// that nothing was attached twice, e.g. across an agent restart.
import { closeSync, openSync } from 'node:fs';
import koffi from 'koffi';
import { libbpf } from '../../src/agent/bpf/libbpf.js';
import { ifIndex, withNetns } from '../../src/agent/bpf/netns.js';
import type { Host } from './netns.js';

const ATTACH = { cgroupSockRelease: 34, skLookup: 36, tcxIngress: 46, tcxEgress: 47 } as const;

let query: ((fd: number, type: number, flags: number, attachFlags: null, ids: null, cnt: Uint32Array) => number) | undefined;

/** Programs attached at a hook (target: an fd, or an ifindex for TCX). */
function progCount(target: number, type: number, what: string): number {
  libbpf();
  query ??= koffi.load('libbpf.so.1').func('int bpf_prog_query(int target_fd, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, _Out_ uint32_t *prog_ids, _Inout_ uint32_t *prog_cnt)') as unknown as typeof query;
  const cnt = new Uint32Array([0]);
  const r = query!(target, type, 0, null, null, cnt);
  if (r !== 0) throw new Error(`BPF_PROG_QUERY on ${what} failed (${r})`);
  return cnt[0]!;
}

function fdCount(path: string, type: number): number {
  const fd = openSync(path, 'r');
  try {
    return progCount(fd, type, path);
  } finally {
    closeSync(fd);
  }
}

export interface Attachments {
  /** XDP programs per interface (at most one per mode). */
  xdp: Record<string, number>;
  /** TCX programs per interface and direction ("eth0/ingress"). */
  tcx: Record<string, number>;
  /** sk_lookup programs on the namespace. */
  skLookup: number;
  /** sock_release programs on the cgroup (SKB splice's cleanup). */
  sockRelease: number;
}

export async function attachments(host: Host, ifaces: readonly string[], cgroup: string): Promise<Attachments> {
  const links = JSON.parse(await host.exec('ip', ['-j', '-d', 'link', 'show'])) as Array<{ ifname: string; xdp?: { prog?: unknown; attached?: unknown[] } }>;
  const xdp: Record<string, number> = {};
  for (const i of ifaces) {
    const l = links.find((x) => x.ifname === i);
    xdp[i] = l?.xdp ? (l.xdp.attached?.length ?? (l.xdp.prog ? 1 : 0)) : 0;
  }
  const tcx: Record<string, number> = {};
  withNetns(host.nsPath, () => {
    for (const i of ifaces) {
      const idx = ifIndex(i);
      tcx[`${i}/ingress`] = progCount(idx, ATTACH.tcxIngress, `${i} tcx ingress`);
      tcx[`${i}/egress`] = progCount(idx, ATTACH.tcxEgress, `${i} tcx egress`);
    }
  });
  return { xdp, tcx, skLookup: fdCount(host.nsPath, ATTACH.skLookup), sockRelease: fdCount(cgroup, ATTACH.cgroupSockRelease) };
}
