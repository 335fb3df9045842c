// SPDX-License-Identifier: GPL-2.0
/* Test fixture: random packet loss at a device's XDP ingress, for tests that need TCP
 * retransmissions and SACK (this kernel has no sch_netem). XDP sees every frame before GRO, so
 * the loss is per segment, not per GSO burst. Drops TCP segments other than SYNs with
 * probability loss_cfg.threshold / 2^32 and counts what it saw and dropped. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_parsing.h"

char LICENSE[] SEC("license") = "GPL";

struct loss_cfg {
	__u32 threshold;
	__u32 _pad;
	__u64 dropped;
	__u64 seen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct loss_cfg);
	__uint(max_entries, 1);
} loss_cfg SEC(".maps");

SEC("xdp")
int exds_test_loss(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct loss_cfg *cfg = bpf_map_lookup_elem(&loss_cfg, &zero);
	struct exds_pkt p;

	if (!cfg || exds_parse(data, data_end, &p) != EXDS_PARSE_OK || !p.tcp || p.tcp->syn)
		return XDP_PASS;
	__sync_fetch_and_add(&cfg->seen, 1);
	if (bpf_get_prandom_u32() >= cfg->threshold)
		return XDP_PASS;
	__sync_fetch_and_add(&cfg->dropped, 1);
	return XDP_DROP;
}
