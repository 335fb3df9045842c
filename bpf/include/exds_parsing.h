/* Packet parsing for XDP and TC programs: Ethernet (up to EXDS_MAX_VLAN_DEPTH VLAN tags), IPv4
 * (options, fragments), IPv6 (a bounded walk over extension headers), then the TCP or UDP header.
 * Every read is bounds-checked against data_end; anything we cannot parse is reported, never
 * guessed, and callers pass such packets untouched. */
#ifndef EXDS_PARSING_H
#define EXDS_PARSING_H

#include "exds_consts.h"

enum exds_parse_result {
	EXDS_PARSE_OK = 0,
	EXDS_PARSE_NOT_IP = 1,    /* ARP, LLDP, ...: not ours to judge */
	EXDS_PARSE_MALFORMED = 2, /* truncated or inconsistent headers */
};

struct exds_pkt {
	void *data_end;
	struct ethhdr *eth;
	struct iphdr *ip4;        /* exactly one of ip4 / ip6 is set when the result is OK */
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;       /* set for TCP with a complete header (not for later fragments) */
	struct udphdr *udp;       /* likewise for UDP */
	__u32 l3_off;             /* offsets from the start of the frame */
	__u32 l4_off;
	__u16 l3_proto;           /* ETH_P_IP or ETH_P_IPV6, host order */
	__u8 l4_proto;            /* IPPROTO_*, the upper-layer protocol after extension headers */
	__u8 fragment;            /* part of a fragmented datagram (first or later) */
	__u8 later_fragment;      /* a non-first fragment: no L4 header here */
	__u8 saddr[16];           /* IPv4 as ::ffff:a.b.c.d */
	__u8 daddr[16];
	__be16 sport;             /* 0 when there is no TCP/UDP header */
	__be16 dport;
};

static __always_inline void exds_v4_mapped(__u8 out[16], __be32 addr)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(&out[12], &addr, 4);
}

static __always_inline int exds_parse_l4(struct exds_pkt *p, void *l4)
{
	p->l4_off = (__u32)(l4 - (void *)p->eth);
	if (p->later_fragment)
		return EXDS_PARSE_OK;
	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > p->data_end)
			return EXDS_PARSE_MALFORMED;
		if (tcp->doff < 5 || l4 + tcp->doff * 4 > p->data_end)
			return EXDS_PARSE_MALFORMED;
		p->tcp = tcp;
		p->sport = tcp->source;
		p->dport = tcp->dest;
	} else if (p->l4_proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > p->data_end)
			return EXDS_PARSE_MALFORMED;
		p->udp = udp;
		p->sport = udp->source;
		p->dport = udp->dest;
	}
	return EXDS_PARSE_OK;
}

static __always_inline int exds_parse_ipv4(struct exds_pkt *p, void *l3)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > p->data_end)
		return EXDS_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5 || l3 + ip->ihl * 4 > p->data_end)
		return EXDS_PARSE_MALFORMED;
	p->ip4 = ip;
	p->l4_proto = ip->protocol;
	__u16 frag = bpf_ntohs(ip->frag_off);
	p->fragment = (frag & (IP_MF | IP_OFFSET)) != 0;
	p->later_fragment = (frag & IP_OFFSET) != 0;
	exds_v4_mapped(p->saddr, ip->saddr);
	exds_v4_mapped(p->daddr, ip->daddr);
	return exds_parse_l4(p, l3 + ip->ihl * 4);
}

static __always_inline int exds_parse_ipv6(struct exds_pkt *p, void *l3)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > p->data_end)
		return EXDS_PARSE_MALFORMED;
	if (ip6->version != 6)
		return EXDS_PARSE_MALFORMED;
	p->ip6 = ip6;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);

	void *cur = ip6 + 1;
	__u8 next = ip6->nexthdr;
#pragma unroll
	for (int i = 0; i < EXDS_MAX_IPV6_EXTHDRS; i++) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
			struct ipv6_opt_hdr *h = cur;
			if ((void *)(h + 1) > p->data_end)
				return EXDS_PARSE_MALFORMED;
			next = h->nexthdr;
			cur += (h->hdrlen + 1) * 8;
		} else if (next == IPPROTO_FRAGMENT) {
			struct frag_hdr *f = cur;
			if ((void *)(f + 1) > p->data_end)
				return EXDS_PARSE_MALFORMED;
			__u16 off = bpf_ntohs(f->frag_off);
			p->fragment = 1;
			p->later_fragment = (off & 0xFFF8) != 0;
			next = f->nexthdr;
			cur += sizeof(*f);
		} else if (next == IPPROTO_AH) {
			struct ip_auth_hdr *ah = cur;
			if ((void *)(ah + 1) > p->data_end)
				return EXDS_PARSE_MALFORMED;
			next = ah->nexthdr;
			cur += (ah->hdrlen + 2) * 4;
		} else {
			break;
		}
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	    next == IPPROTO_FRAGMENT || next == IPPROTO_AH)
		return EXDS_PARSE_MALFORMED; /* deeper than we walk: do not guess */
	if (cur > p->data_end)
		return EXDS_PARSE_MALFORMED;
	p->l4_proto = next;
	return exds_parse_l4(p, cur);
}

/* Parses the frame in [data, data_end). On OK, p describes it; otherwise p is partial. */
static __always_inline int exds_parse(void *data, void *data_end, struct exds_pkt *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->data_end = data_end;
	p->eth = data;
	if ((void *)(p->eth + 1) > data_end)
		return EXDS_PARSE_MALFORMED;

	void *cur = p->eth + 1;
	__u16 proto = bpf_ntohs(p->eth->h_proto);
#pragma unroll
	for (int i = 0; i < EXDS_MAX_VLAN_DEPTH; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > data_end)
			return EXDS_PARSE_MALFORMED;
		proto = bpf_ntohs(vh->h_vlan_encapsulated_proto);
		cur = vh + 1;
	}
	p->l3_off = (__u32)(cur - data);
	p->l3_proto = proto;
	if (proto == ETH_P_IP)
		return exds_parse_ipv4(p, cur);
	if (proto == ETH_P_IPV6)
		return exds_parse_ipv6(p, cur);
	return EXDS_PARSE_NOT_IP;
}

#endif
