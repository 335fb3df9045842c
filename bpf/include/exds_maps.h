/* The ONE place where the key and value layouts shared between BPF programs and user space are
 * defined. src/agent/bpf/layout-*.ts mirror these structs field by field, and a test checks the
 * TypeScript codecs against this object's BTF (sizes and member offsets). Change both together.
 *
 * Conventions: ports in host byte order unless the name says _be; addresses are 16 bytes in
 * network order, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d) so one key serves both families;
 * explicit padding, never implicit, so user space can zero-fill and compare keys bytewise. */
#ifndef EXDS_MAPS_H
#define EXDS_MAPS_H

/* ---- SKB splice (bpf/skb_splice.bpf.c, pinned under skb/) -------------------------------- */

/* State of a spliced socket's pair. User space writes ARMED (with the peer) before it puts the
 * socket into the SOCKHASH; from then on the verdict redirects every skb to the peer. */
enum exds_pair_state {
	EXDS_PAIR_NONE = 0,
	EXDS_PAIR_ARMED = 1,   /* redirect every skb to peer_cookie */
	EXDS_PAIR_BROKEN = 2,  /* a redirect failed (peer gone): bytes pass, user space resets both */
};

/* skb_pairs value, keyed by the cookie of a spliced socket. */
struct exds_skb_pair {
	__u64 peer_cookie;   /* the other socket of the connection: where our bytes go */
	__u32 state;         /* enum exds_pair_state */
	__u32 _pad;
};

/* skb_sock_stats value, keyed by socket cookie. Created (zeroed) by user space at handover,
 * then written only by the verdict (user space reads and deletes, never overwrites). */
struct exds_skb_sock {
	__u64 passed_bytes;      /* handed to user space (SK_PASS): only after a failed redirect */
	__u64 redirected_bytes;  /* redirected to the peer socket */
	__u64 passed_skbs;
	__u64 redirected_skbs;
};

/* skb_stats: one per-CPU element, summed by user space. */
struct exds_skb_stats {
	__u64 socks_released;    /* TCP sockets of the cgroup whose last reference went */
	__u64 socks_cleaned;     /* ... that still had entries (user space had not removed them) */
	__u64 passed_bytes;
	__u64 passed_skbs;
	__u64 redirected_bytes;
	__u64 redirected_skbs;
	__u64 redirect_errors;
	__u64 unpaired_skbs;     /* skbs of a SOCKHASH socket without an ARMED pair */
	__u64 empty_skbs;        /* bare FINs, consumed without redirect */
};

/* ---- sk_lookup steering (bpf/steer.bpf.c, pinned under steer/) --------------------------- */

/* steer_ports key: destination address (all zero = any local address), port and protocol. */
struct exds_steer_key {
	__u8 addr[16];
	__u16 port;
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
};

/* steer_ports value: slot of the listening socket in the steer_socks SOCKMAP. */
struct exds_steer_val {
	__u32 slot;
};

struct exds_steer_stats {
	__u64 matched;
	__u64 assigned;
	__u64 no_socket;
	__u64 assign_errors;
};

/* ---- XDP drop rules (bpf/firewall.bpf.c, pinned under firewall/<ifname>/) ---------------- */

/* fw_rules LPM key. The data part is port then address, so a rule scoped to a port is the
 * prefix (16 + address bits) with that port, and a rule for any port uses port 0. */
struct exds_fw_key {
	__u32 prefixlen;   /* 16 + 96 + v4 prefix, or 16 + v6 prefix */
	__u16 port_be;     /* destination port, network order; 0 = any port */
	__u8 addr[16];     /* source address */
	__u8 _pad[2];
};

struct exds_fw_rule {
	__u32 index;       /* slot in fw_counters */
};

/* fw_counters value (per CPU, one per rule). */
struct exds_fw_counter {
	__u64 packets;
	__u64 bytes;
};

/* fw_stats: one per-CPU element. */
struct exds_fw_stats {
	__u64 passed;
	__u64 dropped;
	__u64 not_ip;
	__u64 malformed;
};

/* ---- XDP splice (pinned under xdp/): bpf/include/exds_xdp_maps.h, in its own file and
 * included here, so that this header stays the one place where every shared layout is found. */
#include "exds_xdp_maps.h"

#endif
