/* The maps of XDP splice, shared by the XDP program and the TC egress guard (two objects; the
 * maps are pinned by name, so whichever object loads second reuses the first one's maps), and
 * the key helpers both need. Capacities are defaults; the loader resizes xdp_conns. */
#ifndef EXDS_XDP_SPLICE_H
#define EXDS_XDP_SPLICE_H

#include "exds_consts.h"
#include "exds_parsing.h"
#include "exds_xdp_maps.h"

#ifndef TC_ACT_REDIRECT
#define TC_ACT_REDIRECT 7
#endif

#define EXDS_MAX_XDP_CONNS   131072  /* two entries per spliced connection */
#define EXDS_MAX_XDP_PORTS   64      /* interfaces XDP splice may redirect to */

/* No preallocation: an element user space replaces is freed after an RCU grace period, so a
 * program still holding the old element never writes into a recycled one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct exds_xdp_key);
	__type(value, struct exds_xdp_conn);
	__uint(max_entries, EXDS_MAX_XDP_CONNS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_xdp_stats);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_stats SEC(".maps");

static __always_inline struct exds_xdp_stats *exds_xdp_stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&xdp_stats, &zero);
}

#define EXDS_XDP_COUNT(st, field) do { if (st) (st)->field++; } while (0)

/* The key of a packet arriving at the middlebox. */
static __always_inline void exds_xdp_key_in(struct exds_xdp_key *k, const struct exds_pkt *p)
{
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->sport_be = p->sport;
	k->dport_be = p->dport;
}

/* The key of the connection a locally sent packet belongs to: the reverse of its tuple. */
static __always_inline void exds_xdp_key_out(struct exds_xdp_key *k, const struct exds_pkt *p)
{
	__builtin_memcpy(k->saddr, p->daddr, 16);
	__builtin_memcpy(k->daddr, p->saddr, 16);
	k->sport_be = p->dport;
	k->dport_be = p->sport;
}

/* The key of the paired direction: packets of the peer connection arrive with the reverse of
 * the tuple this entry rewrites to. */
static __always_inline void exds_xdp_key_peer(struct exds_xdp_key *k, const struct exds_xdp_conn *e)
{
	__builtin_memcpy(k->saddr, e->new_daddr, 16);
	__builtin_memcpy(k->daddr, e->new_saddr, 16);
	k->sport_be = e->new_dport_be;
	k->dport_be = e->new_sport_be;
}

#endif
