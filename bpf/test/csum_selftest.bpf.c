// SPDX-License-Identifier: GPL-2.0
/* Test fixture for include/exds_csum.h and exds_parsing.h, run with BPF_PROG_TEST_RUN: rewrites
 * the addresses, ports, sequence and acknowledgment numbers of a TCP packet as csum_cfg says,
 * with incremental checksum updates only. The test checks the result with an independent
 * checksum computed in TypeScript. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_csum.h"
#include "exds_parsing.h"

char LICENSE[] SEC("license") = "GPL";

struct csum_cfg {
	__u8 saddr[16];   /* IPv4: last 4 bytes used */
	__u8 daddr[16];
	__u16 sport_be;
	__u16 dport_be;
	__u32 seq_delta;
	__u32 ack_delta;
	__u32 parse_result; /* out: what exds_parse returned */
	__u32 l4_off;       /* out */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct csum_cfg);
	__uint(max_entries, 1);
} csum_cfg SEC(".maps");

SEC("xdp")
int exds_test_csum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct csum_cfg *cfg = bpf_map_lookup_elem(&csum_cfg, &zero);
	struct exds_pkt p;
	if (!cfg)
		return XDP_ABORTED;

	int res = exds_parse(data, data_end, &p);
	cfg->parse_result = res;
	cfg->l4_off = p.l4_off;
	if (res != EXDS_PARSE_OK || !p.tcp)
		return XDP_PASS;

	struct tcphdr *tcp = p.tcp;
	__u32 l4 = 0; /* delta for the TCP checksum (pseudo-header and header) */
	if (p.ip4) {
		struct iphdr *ip = p.ip4;
		__u32 ns, nd;
		__builtin_memcpy(&ns, &cfg->saddr[12], 4);
		__builtin_memcpy(&nd, &cfg->daddr[12], 4);
		__u32 l3 = exds_csum_diff32(0, ip->saddr, ns);
		l3 = exds_csum_diff32(l3, ip->daddr, nd);
		exds_csum_apply(&ip->check, l3);
		l4 = l3; /* the pseudo-header carries the same addresses */
		ip->saddr = ns;
		ip->daddr = nd;
	} else {
		struct ipv6hdr *ip6 = p.ip6;
		__u32 ns[4], nd[4], os[4], od[4];
		__builtin_memcpy(ns, cfg->saddr, 16);
		__builtin_memcpy(nd, cfg->daddr, 16);
		__builtin_memcpy(os, &ip6->saddr, 16);
		__builtin_memcpy(od, &ip6->daddr, 16);
		l4 = exds_csum_diff128(l4, os, ns);
		l4 = exds_csum_diff128(l4, od, nd);
		__builtin_memcpy(&ip6->saddr, ns, 16);
		__builtin_memcpy(&ip6->daddr, nd, 16);
	}
	l4 = exds_csum_diff16(l4, tcp->source, cfg->sport_be);
	l4 = exds_csum_diff16(l4, tcp->dest, cfg->dport_be);
	__u32 seq = bpf_htonl(bpf_ntohl(tcp->seq) + cfg->seq_delta);
	__u32 ack = bpf_htonl(bpf_ntohl(tcp->ack_seq) + cfg->ack_delta);
	l4 = exds_csum_diff32(l4, tcp->seq, seq);
	l4 = exds_csum_diff32(l4, tcp->ack_seq, ack);
	tcp->source = cfg->sport_be;
	tcp->dest = cfg->dport_be;
	tcp->seq = seq;
	tcp->ack_seq = ack;
	exds_csum_apply(&tcp->check, l4);
	return XDP_PASS;
}
