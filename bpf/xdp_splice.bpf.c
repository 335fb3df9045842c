// SPDX-License-Identifier: GPL-2.0
/* XDP splice: packets of a proxied client connection become packets of its server connection
 * and back, without the middlebox TCP stack. User space pairs the two connections and writes
 * one xdp_conns entry per direction (docs/xdp-splice.md, "pairing contract"); this program
 * follows the entry's state:
 *   LEARN  pass to the stack, remember the source's latest TSval (user space cannot read it)
 *   HOLD   freeze the local sockets: drop what would change them (data, SYN, FIN; the peer
 *          retransmits), pass pure ACKs (they let the send queues drain) and RST
 *   ACTIVE rewrite addresses, ports, seq/ack, every TS option and SACK edge, the window when
 *          the legs scale differently; incremental checksums only; MACs and egress from
 *          bpf_fib_lookup; redirect (an unresolved next hop goes to TC, which has the kernel
 *          resolve it). FIN/RST bookkeeping removes the pair when it ends.
 * Everything else passes untouched. IPv4 only (IPv6 keys fit the map; the rewrite is not done). */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_csum.h"
#include "exds_tcpopt.h"
#include "exds_xdp_splice.h"

char LICENSE[] SEC("license") = "GPL";

/* Interfaces spliced packets may leave by (ifindex -> ifindex). Not pinned: it is derived from
 * the interface list, which the loader writes at every attach; the kernel marks devmaps
 * read-only for programs (map_flags), which libbpf 1.1 would refuse to reuse from a pin. A
 * program still attached from an earlier load keeps its own devmap alive until it is replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, EXDS_MAX_XDP_PORTS);
} xdp_tx_ports SEC(".maps");

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

/* last_seen_ns is refreshed when it is older than this (~67 ms): one write per flow and tick,
 * not per packet. */
#define EXDS_LAST_SEEN_GRAIN_NS (1ULL << 26)

static __always_inline void touch(struct exds_xdp_conn *e)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now - e->last_seen_ns > EXDS_LAST_SEEN_GRAIN_NS)
		e->last_seen_ns = now;
}

/* LEARN and HOLD: keep the source's newest TSval (serial-number order, RFC 1982). */
static __always_inline void learn_tsval(struct exds_xdp_conn *e, struct tcphdr *tcp, void *data_end,
					const struct exds_tcpopt *o)
{
	if (!o->ts_at)
		return;
	__u32 tsval = exds_tcpopt_tsval(tcp, data_end, o);
	__u32 ev = e->events;
	if (!(ev & EXDS_XDP_E_TS_SEEN)) {
		e->tsval_last = tsval;
		__sync_fetch_and_or(&e->events, EXDS_XDP_E_TS_SEEN);
	} else if ((__s32)(tsval - e->tsval_last) > 0) {
		e->tsval_last = tsval;
	}
}

static __always_inline void remove_pair(const struct exds_xdp_key *key, const struct exds_xdp_key *peer)
{
	bpf_map_delete_elem(&xdp_conns, peer);
	bpf_map_delete_elem(&xdp_conns, key);
}

/* Connection end, on an ACTIVE entry, after the rewrite. `raw_ack` is the acknowledgment number
 * as it arrived; `seq_out` the translated sequence number. Returns nothing: the packet is
 * forwarded either way, and the entry may be gone afterwards. */
static __always_inline void track_end(const struct exds_xdp_key *key, struct exds_xdp_conn *e, __u8 flags,
				      __u32 raw_ack, __u32 seq_out, __u32 payload, struct exds_xdp_stats *st)
{
	struct exds_xdp_key peer;
	exds_xdp_key_peer(&peer, e);

	if (flags & TCPF_RST) {
		remove_pair(key, &peer);
		EXDS_XDP_COUNT(st, closed_rst);
		return;
	}
	__u32 ev = e->events;
	if ((flags & TCPF_ACK) && (ev & EXDS_XDP_E_PEER_FIN) && !(ev & EXDS_XDP_E_PEER_FIN_ACKED) &&
	    (__s32)(raw_ack - e->fin_ack) >= 0) {
		ev = __sync_fetch_and_or(&e->events, EXDS_XDP_E_PEER_FIN_ACKED) | EXDS_XDP_E_PEER_FIN_ACKED;
		struct exds_xdp_conn *pe = bpf_map_lookup_elem(&xdp_conns, &peer);
		if (pe)
			__sync_fetch_and_or(&pe->events, EXDS_XDP_E_FIN_ACKED);
		if (ev & EXDS_XDP_E_FIN_ACKED) {
			/* Both FINs acknowledged: this packet is the last ACK. */
			remove_pair(key, &peer);
			EXDS_XDP_COUNT(st, closed_fin);
			return;
		}
	}
	if (flags & TCPF_FIN) {
		EXDS_XDP_COUNT(st, fins);
		if (!(ev & EXDS_XDP_E_FIN)) {
			__sync_fetch_and_or(&e->events, EXDS_XDP_E_FIN);
			struct exds_xdp_conn *pe = bpf_map_lookup_elem(&xdp_conns, &peer);
			if (pe) {
				/* The FIN takes one sequence number after the payload. */
				pe->fin_ack = seq_out + payload + 1;
				__sync_fetch_and_or(&pe->events, EXDS_XDP_E_PEER_FIN);
			}
		}
	}
}

static __always_inline int count_fib_failure(long rc, struct exds_xdp_stats *st)
{
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		EXDS_XDP_COUNT(st, drop_frag_needed);
	else
		EXDS_XDP_COUNT(st, drop_fib);
	return XDP_DROP;
}

/* The neighbour path: the rewritten packet goes up to TC ingress (tc_splice.bpf.c), tagged with
 * its egress interface, where bpf_redirect_neigh resolves the next hop. Called after every write
 * to the packet: adjusting the metadata invalidates packet pointers. */
static __always_inline int to_neigh_path(struct xdp_md *ctx, __u32 ifindex, struct exds_xdp_stats *st)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct exds_xdp_meta)))
		goto drop;
	void *data = (void *)(long)ctx->data;
	struct exds_xdp_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > data)
		goto drop;
	m->magic = EXDS_XDP_META_MAGIC;
	m->ifindex = ifindex;
	EXDS_XDP_COUNT(st, neigh_slowpath);
	return XDP_PASS;
drop:
	EXDS_XDP_COUNT(st, drop_no_neigh);
	return XDP_DROP;
}

static __always_inline int splice(struct xdp_md *ctx, struct exds_pkt *p, const struct exds_xdp_key *key,
				  struct exds_xdp_conn *e, const struct exds_tcpopt *o, __u8 flags, __u32 payload,
				  struct exds_xdp_stats *st)
{
	struct iphdr *ip = p->ip4;
	struct tcphdr *tcp = p->tcp;
	struct ethhdr *eth = p->eth;
	__be32 nsaddr, ndaddr;
	__builtin_memcpy(&nsaddr, &e->new_saddr[12], 4);
	__builtin_memcpy(&ndaddr, &e->new_daddr[12], 4);

	/* Route first: the packet is written only once it is known to leave. */
	__u16 ip_len = bpf_ntohs(ip->tot_len);
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = e->new_sport_be;
	fib.dport = e->new_dport_be;
	fib.tot_len = ip_len; /* in: for the MTU check; out: the field holds the MTU */
	fib.tos = ip->tos;
	fib.ipv4_src = nsaddr;
	fib.ipv4_dst = ndaddr;
	fib.ifindex = ctx->ingress_ifindex;
	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	int no_neigh = rc == BPF_FIB_LKUP_RET_NO_NEIGH;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && !no_neigh)
		return count_fib_failure(rc, st);

	/* Through the devmap even when the egress is the ingress (one-armed): on veth, XDP_TX
	 * wakes the peer only if the peer runs an XDP program itself, while a devmap redirect
	 * always flushes; on NICs both bulk-transmit. The map also limits where packets may go
	 * (the fib lookup fills in the egress even when the neighbour is missing). */
	int action = bpf_redirect_map(&xdp_tx_ports, fib.ifindex, XDP_DROP);
	if (action != XDP_REDIRECT) {
		EXDS_XDP_COUNT(st, drop_egress);
		return XDP_DROP;
	}
	if (no_neigh && !(e->events & EXDS_XDP_E_NO_NEIGH))
		__sync_fetch_and_or(&e->events, EXDS_XDP_E_NO_NEIGH);

	/* IP: addresses. The TCP pseudo-header carries the same change. */
	__u32 l3 = exds_csum_diff32(0, ip->saddr, nsaddr);
	l3 = exds_csum_diff32(l3, ip->daddr, ndaddr);
	ip->saddr = nsaddr;
	ip->daddr = ndaddr;
	exds_csum_apply(&ip->check, l3);

	/* TCP: ports, sequence spaces, window, options. */
	__u32 l4 = l3;
	l4 = exds_csum_diff16(l4, tcp->source, e->new_sport_be);
	l4 = exds_csum_diff16(l4, tcp->dest, e->new_dport_be);
	tcp->source = e->new_sport_be;
	tcp->dest = e->new_dport_be;

	__u32 seq_out = bpf_ntohl(tcp->seq) + e->seq_delta;
	__be32 nseq = bpf_htonl(seq_out);
	l4 = exds_csum_diff32(l4, tcp->seq, nseq);
	tcp->seq = nseq;

	__u32 raw_ack = bpf_ntohl(tcp->ack_seq);
	if (flags & TCPF_ACK) {
		__be32 nack = bpf_htonl(raw_ack + e->ack_delta);
		l4 = exds_csum_diff32(l4, tcp->ack_seq, nack);
		tcp->ack_seq = nack;
	}

	__u32 cflags = e->flags;
	if (cflags & EXDS_XDP_F_RESCALE) {
		__u32 w = ((__u32)bpf_ntohs(tcp->window) << (e->wscale_in & 15)) >> (e->wscale_out & 15);
		__be16 nw = bpf_htons(w > 0xffff ? 0xffff : w);
		l4 = exds_csum_diff16(l4, tcp->window, nw);
		tcp->window = nw;
	}
	if ((cflags & EXDS_XDP_F_TS) && !o->ts_at && !(flags & TCPF_RST))
		EXDS_XDP_COUNT(st, ts_missing);
	if (o->n)
		l4 = exds_tcpopt_translate(tcp, p->data_end, o, e->tsval_delta, e->tsecr_delta, e->ack_delta, l4);
	exds_csum_apply(&tcp->check, l4);

	/* L2 from the neighbour table. */
	if (!no_neigh) {
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	}

	__u64 len = (__u64)ip_len + p->l3_off;
	e->packets++;
	e->bytes += len;
	if (st) {
		st->spliced_packets++;
		st->spliced_bytes += len;
	}
	touch(e);
	if (flags & (TCPF_FIN | TCPF_RST) || (e->events & EXDS_XDP_E_PEER_FIN))
		track_end(key, e, flags, raw_ack, seq_out, payload, st);
	if (no_neigh)
		return to_neigh_path(ctx, fib.ifindex, st);
	return action;
}

SEC("xdp.frags")
int exds_xdp_splice(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct exds_xdp_stats *st = exds_xdp_stats();
	struct exds_pkt pkt;

	if (exds_parse(data, data_end, &pkt) != EXDS_PARSE_OK) {
		EXDS_XDP_COUNT(st, pass_unparsed);
		return XDP_PASS;
	}
	if (!pkt.ip4 || !pkt.tcp)
		return XDP_PASS; /* not IPv4 TCP with a header here: not ours */

	struct exds_xdp_key key;
	exds_xdp_key_in(&key, &pkt);
	struct exds_xdp_conn *e = bpf_map_lookup_elem(&xdp_conns, &key);
	if (!e)
		return XDP_PASS;

	if (pkt.fragment) {
		EXDS_XDP_COUNT(st, pass_fragment);
		return XDP_PASS;
	}
	struct tcphdr *tcp = pkt.tcp;
	__u32 ip_len = bpf_ntohs(pkt.ip4->tot_len);
	__u32 hdrs = (__u32)pkt.ip4->ihl * 4 + (__u32)tcp->doff * 4;
	struct exds_tcpopt opts;
	if (ip_len < hdrs || exds_tcpopt_scan(tcp, data_end, &opts) != EXDS_TCPOPT_OK) {
		EXDS_XDP_COUNT(st, pass_malformed);
		return XDP_PASS;
	}
	__u32 payload = ip_len - hdrs;
	__u8 flags = ((__u8 *)tcp)[13];

	__u32 state = e->state;
	if (state == EXDS_XDP_ACTIVE) {
		if (flags & TCPF_SYN) {
			/* A new connection on the tuple: the pair is stale. Let the stack answer. */
			struct exds_xdp_key peer;
			exds_xdp_key_peer(&peer, e);
			remove_pair(&key, &peer);
			EXDS_XDP_COUNT(st, closed_syn);
			return XDP_PASS;
		}
		return splice(ctx, &pkt, &key, e, &opts, flags, payload, st);
	}

	touch(e);
	learn_tsval(e, tcp, data_end, &opts);
	if (state == EXDS_XDP_HOLD) {
		if ((flags & TCPF_RST) || (!(flags & (TCPF_SYN | TCPF_FIN)) && payload == 0)) {
			EXDS_XDP_COUNT(st, hold_passed);
			return XDP_PASS;
		}
		EXDS_XDP_COUNT(st, hold_dropped);
		return XDP_DROP;
	}
	EXDS_XDP_COUNT(st, learned);
	return XDP_PASS;
}
