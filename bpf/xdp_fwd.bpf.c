// SPDX-License-Identifier: GPL-2.0
/* The minimal XDP forwarder: the XDP limit the benchmarks measure XDP splice against (on veth,
 * attaching any XDP program costs GSO/GRO aggregation, so kernel routing is not the fair
 * reference). Per packet: Ethernet and IPv4 headers, bpf_fib_lookup, TTL, MACs, redirect.
 * Whatever it cannot forward (local, no route, no neighbour, not IPv4) passes to the stack.
 * exds_xdp_fwd_keep_ttl is the same path without the TTL decrement, for BPF_PROG_TEST_RUN
 * repeats, which rewrite the packet in place (the TTL would run out after 254 rounds).
 * exds_xdp_pass is the floor: XDP_PASS and nothing else. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_consts.h"
#include "exds_csum.h"
#include "exds_xdp_maps.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} fwd_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_fwd_stats);
	__uint(max_entries, 1);
} fwd_stats SEC(".maps");

static __always_inline int forward(struct xdp_md *ctx, const int dec_ttl)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct exds_fwd_stats *st = bpf_map_lookup_elem(&fwd_stats, &zero);
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ttl <= 1)
		goto pass;

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		goto pass;

	/* Devmap redirect also for egress == ingress: see xdp_splice.bpf.c on XDP_TX and veth. */
	int action = bpf_redirect_map(&fwd_tx_ports, fib.ifindex, XDP_PASS);
	if (action != XDP_REDIRECT)
		goto pass;
	if (dec_ttl) {
		/* TTL is the high byte of the 16-bit word it shares with the protocol. */
		exds_csum_replace2(&ip->check, bpf_htons((__u16)ip->ttl << 8), bpf_htons((__u16)(ip->ttl - 1) << 8));
		ip->ttl--;
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (st)
		st->forwarded++;
	return action;
pass:
	if (st)
		st->passed++;
	return XDP_PASS;
}

SEC("xdp.frags")
int exds_xdp_fwd(struct xdp_md *ctx)
{
	return forward(ctx, 1);
}

SEC("xdp.frags")
int exds_xdp_fwd_keep_ttl(struct xdp_md *ctx)
{
	return forward(ctx, 0);
}

SEC("xdp.frags")
int exds_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
