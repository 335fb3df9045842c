// SPDX-License-Identifier: GPL-2.0
/* The TC side of XDP splice, sharing xdp_conns and xdp_stats with bpf/xdp_splice.bpf.c through
 * their pins:
 *  - egress guard: once a connection is spliced (ACTIVE), its local sockets must stay silent.
 *    User space closes them in TCP repair mode, which sends neither FIN nor RST; this is the
 *    safety net for anything the local stack still emits on such a tuple (a late ACK, a
 *    keepalive, an RST answering a packet XDP passed). Spliced packets do not come through
 *    here: XDP_REDIRECT bypasses the qdisc layer.
 *  - ingress neighbour path: XDP cannot resolve a next hop whose neighbour entry is gone (after
 *    a long idle period the kernel may have collected it). XDP then rewrites the packet anyway,
 *    tags it in the XDP metadata with the egress interface, and passes it; this program hands
 *    it to bpf_redirect_neigh, which resolves the neighbour and transmits. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_xdp_splice.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int exds_tc_splice_guard(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct exds_pkt pkt;

	/* Only what a local socket sent (segments, and the stack's own RST/ACK replies, which go
	 * out through its control socket). A spliced packet on the neighbour path has no socket. */
	if (!skb->sk)
		return TC_ACT_OK;
	if (exds_parse(data, data_end, &pkt) != EXDS_PARSE_OK || !pkt.ip4 || !pkt.tcp)
		return TC_ACT_OK;

	struct exds_xdp_key key;
	exds_xdp_key_out(&key, &pkt);
	struct exds_xdp_conn *e = bpf_map_lookup_elem(&xdp_conns, &key);
	if (!e || e->state != EXDS_XDP_ACTIVE)
		return TC_ACT_OK;
	struct exds_xdp_stats *st = exds_xdp_stats();
	EXDS_XDP_COUNT(st, guard_dropped);
	return TC_ACT_SHOT;
}

SEC("tc")
int exds_tc_splice_neigh(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	struct exds_xdp_meta *m = (void *)(long)skb->data_meta;

	if ((void *)(m + 1) > data || m->magic != EXDS_XDP_META_MAGIC)
		return TC_ACT_OK;
	struct exds_xdp_stats *st = exds_xdp_stats();
	long rc = bpf_redirect_neigh(m->ifindex, NULL, 0, 0);
	if (rc == TC_ACT_REDIRECT)
		EXDS_XDP_COUNT(st, neigh_redirected);
	return rc;
}
