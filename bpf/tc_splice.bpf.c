// SPDX-License-Identifier: GPL-2.0
/* TC egress guard of XDP splice: once a connection is spliced (ACTIVE), its local socket must
 * stay silent. User space closes the sockets in TCP repair mode, which sends neither FIN nor
 * RST; this program is the safety net for anything the local stack still emits on such a tuple
 * (a late ACK, a keepalive, an RST answering a packet XDP passed). Spliced packets never come
 * through here: XDP_TX and XDP_REDIRECT bypass the qdisc layer. Shares xdp_conns and xdp_stats
 * with bpf/xdp_splice.bpf.c through their pins. */
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
