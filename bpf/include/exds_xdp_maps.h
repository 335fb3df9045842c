/* Key and value layouts of the XDP splice maps (bpf/xdp_splice.bpf.c, bpf/tc_splice_guard.bpf.c;
 * pinned under xdp/), shared with user space: src/agent/bpf/layout-xdp.ts mirrors these structs
 * field by field and test/unit/xdp-splice-prog.test.ts checks the codecs against the object's
 * BTF. docs/xdp-splice.md states the pairing contract: who writes which field, in which order.
 * Conventions as in exds_maps.h: addresses are 16 bytes in network order, IPv4 as IPv4-mapped
 * IPv6; a field ending in _be is in network order; explicit padding only. */
#ifndef EXDS_XDP_MAPS_H
#define EXDS_XDP_MAPS_H

/* xdp_conns key: one direction of a proxied TCP connection, as its packets arrive at the
 * middlebox (source = the peer, destination = the proxy's own socket). */
struct exds_xdp_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport_be;
	__u16 dport_be;
};

/* Pairing state, written by user space only (see docs/xdp-splice.md). */
enum exds_xdp_state {
	EXDS_XDP_LEARN = 1,  /* pass to the stack; record the source's latest TSval */
	EXDS_XDP_HOLD = 2,   /* drop segments that carry data, SYN or FIN; pass pure ACKs and RST */
	EXDS_XDP_ACTIVE = 3, /* rewrite into the peer connection and redirect */
};

/* flags, written by user space with the entry. */
#define EXDS_XDP_F_TS      0x1  /* both legs negotiated timestamps: translate TS options */
#define EXDS_XDP_F_RESCALE 0x2  /* the legs use different window scales: rescale the window */

/* events, written by BPF only (user space copies them when it replaces an entry). */
#define EXDS_XDP_E_TS_SEEN        0x1   /* tsval_last holds a TSval of the source */
#define EXDS_XDP_E_FIN            0x2   /* the source sent FIN */
#define EXDS_XDP_E_FIN_ACKED      0x4   /* ... and the peer acknowledged it */
#define EXDS_XDP_E_PEER_FIN       0x8   /* the peer sent FIN: fin_ack is armed */
#define EXDS_XDP_E_PEER_FIN_ACKED 0x10  /* the source acknowledged the peer's FIN */
#define EXDS_XDP_E_NO_NEIGH       0x20  /* a packet met an unresolved next hop (neighbour path) */

/* xdp_conns value. */
struct exds_xdp_conn {
	/* written by user space */
	__u32 state;          /* enum exds_xdp_state */
	__u32 flags;          /* EXDS_XDP_F_* */
	__u8 new_saddr[16];   /* ACTIVE: the tuple of the peer connection the packet becomes */
	__u8 new_daddr[16];
	__u16 new_sport_be;
	__u16 new_dport_be;
	__u32 seq_delta;      /* added to the sequence number */
	__u32 ack_delta;      /* added to the acknowledgment number and to every SACK edge */
	__u32 tsval_delta;    /* added to TSval */
	__u32 tsecr_delta;    /* added to TSecr (a zero TSecr stays zero) */
	__u8 wscale_in;       /* EXDS_XDP_F_RESCALE: window bytes = field << wscale_in */
	__u8 wscale_out;      /*                     field out = bytes >> wscale_out (max 65535) */
	__u16 _pad0;
	__u32 idle_ms;        /* the sweeper removes the pair after this long without a packet */
	__u32 owner_id;       /* chosen by the writer (e.g. a listener id); BPF ignores it */
	/* written by BPF */
	__u32 tsval_last;     /* LEARN/HOLD: latest TSval of the source (with EXDS_XDP_E_TS_SEEN) */
	__u32 events;         /* EXDS_XDP_E_* */
	__u32 fin_ack;        /* with EXDS_XDP_E_PEER_FIN: an ack >= this acknowledges the peer's FIN */
	__u32 _pad1;
	__u64 last_seen_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns), updated at ~64 ms grain */
	__u64 packets;        /* spliced by this entry (approximate under concurrent CPUs) */
	__u64 bytes;
};

/* xdp_stats: one per-CPU element, summed by user space. */
struct exds_xdp_stats {
	__u64 spliced_packets;
	__u64 spliced_bytes;
	__u64 learned;          /* LEARN: passed to the stack, TSval recorded */
	__u64 hold_dropped;     /* HOLD: data, SYN or FIN dropped (the peer retransmits) */
	__u64 hold_passed;      /* HOLD: pure ACK or RST passed */
	__u64 fins;             /* FIN segments spliced */
	__u64 closed_fin;       /* pairs removed after both FINs were acknowledged */
	__u64 closed_rst;       /* pairs removed by an RST */
	__u64 closed_syn;       /* pairs removed because a SYN reused the tuple (stale pair) */
	__u64 drop_fib;         /* no route for the rewritten packet (or forwarding disabled) */
	__u64 drop_no_neigh;    /* next hop unresolved and the packet could not take the TC path */
	__u64 neigh_slowpath;   /* next hop unresolved: rewritten, passed to TC for bpf_redirect_neigh */
	__u64 neigh_redirected; /* TC ingress: handed to bpf_redirect_neigh */
	__u64 drop_frag_needed; /* rewritten packet larger than the egress MTU */
	__u64 drop_egress;      /* egress interface not in xdp_tx_ports */
	__u64 pass_fragment;    /* IP fragment of a tracked tuple: passed untouched */
	__u64 pass_malformed;   /* tracked tuple with malformed TCP options: passed untouched */
	__u64 pass_unparsed;    /* not parseable as IP/TCP at all: passed untouched */
	__u64 ts_missing;       /* spliced without a TS option although the pair uses timestamps */
	__u64 guard_dropped;    /* TC egress: local segments of an ACTIVE tuple dropped */
};

/* XDP metadata in front of a spliced packet that XDP passes to the TC neighbour path. */
#define EXDS_XDP_META_MAGIC 0x58445350 /* "XDSP" */
struct exds_xdp_meta {
	__u32 magic;
	__u32 ifindex;   /* egress interface from bpf_fib_lookup */
};

/* fwd_stats of the minimal XDP forwarder (bpf/xdp_fwd.bpf.c, the benchmarks' XDP limit). */
struct exds_fwd_stats {
	__u64 forwarded;
	__u64 passed;
	__u64 dropped;
};

#endif
