// SPDX-License-Identifier: GPL-2.0
/* SKB splice: the kernel forwards the bytes of a proxied TCP connection socket to socket.
 *
 * Path of a connection:
 *  1. sockops, on the handshake: sockets accepted on a listener port (skb_ports), and sockets
 *     the proxy connects, are registered for a state callback, so that their close removes
 *     what we keep for them even when no user space is left to do it.
 *  2. handover (user space, see docs/bpf.md "pairing contract"): once user space has copied
 *     the first bytes and holds none in flight, it writes both sockets' pairs (skb_pairs) and
 *     puts both sockets into the skb_socks SOCKHASH, whose verdict program is below.
 *  3. the verdict, per received skb: redirect it to the peer socket. A socket only enters the
 *     SOCKHASH already paired, so no byte is ever handed to user space through the psock,
 *     where the kernel can lose it (a psock's queue dies with the socket's TCP_CLOSE).
 *  4. sockops STATE_CB on TCP_CLOSE: the socket's pair and counters are deleted; the kernel
 *     itself removes the socket from the SOCKHASH.
 * Nothing here is config: listener ports, pairs and capacities come from user space. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_consts.h"
#include "exds_maps.h"

char LICENSE[] SEC("license") = "GPL";

/* ---- maps (pinned by name under <pin root>/skb/) ---------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct exds_port_key);
	__type(value, struct exds_port_val);
	__uint(max_entries, EXDS_MAX_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skb_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, __u64);    /* socket cookie */
	__type(value, __u64);  /* socket (fd from user space, cookie when read back) */
	__uint(max_entries, EXDS_MAX_SOCKS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skb_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);    /* socket cookie */
	__type(value, struct exds_skb_pair);
	__uint(max_entries, EXDS_MAX_SOCKS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skb_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);    /* socket cookie */
	__type(value, struct exds_skb_sock);
	__uint(max_entries, EXDS_MAX_SOCKS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skb_sock_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_skb_stats);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} skb_stats SEC(".maps");

static __always_inline struct exds_skb_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&skb_stats, &zero);
}

/* ---- 1. and 4. sockops: close callbacks for the sockets we may splice ------------------- */

static __always_inline int is_listener_port(struct bpf_sock_ops *ops)
{
	struct exds_port_key key = { .port = (__u16)ops->local_port };
	return bpf_map_lookup_elem(&skb_ports, &key) != NULL;
}

static __always_inline void watch(struct bpf_sock_ops *ops)
{
	struct exds_skb_stats *st = stats();

	if (bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG) == 0 && st)
		st->socks_watched++;
}

static __always_inline void forget(struct bpf_sock_ops *ops)
{
	__u64 cookie = bpf_get_socket_cookie(ops);
	struct exds_skb_stats *st = stats();
	long a = bpf_map_delete_elem(&skb_pairs, &cookie);
	long b = bpf_map_delete_elem(&skb_sock_stats, &cookie);

	if ((a == 0 || b == 0) && st)
		st->socks_closed++;
}

SEC("sockops")
int exds_skb_sockops(struct bpf_sock_ops *ops)
{
	switch (ops->op) {
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (is_listener_port(ops))
			watch(ops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* Sockops is attached to the proxy's own cgroup: its outgoing sockets are the
		 * upstream legs (and a few others, for which the callback costs nothing). */
		watch(ops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (ops->args[1] == BPF_TCP_CLOSE)
			forget(ops);
		break;
	}
	return 1;
}

/* ---- 3. verdict: redirect to the peer --------------------------------------------------- */

SEC("sk_skb/stream_verdict")
int exds_skb_verdict(struct __sk_buff *skb)
{
	struct exds_skb_stats *st = stats();

	/* An skb without payload is a bare FIN (TCP has already taken note of it). Redirected, the
	 * psock backlog would "send" zero bytes, read that as a broken pipe and fail the peer
	 * socket with EPIPE (measured); user space learns the end of stream from the socket
	 * state anyway. So consume it here. */
	if (skb->len == 0) {
		if (st)
			st->empty_skbs++;
		return SK_DROP;
	}

	__u64 cookie = bpf_get_socket_cookie(skb);
	struct exds_skb_sock *sock = bpf_map_lookup_elem(&skb_sock_stats, &cookie);
	struct exds_skb_pair *pair = bpf_map_lookup_elem(&skb_pairs, &cookie);

	if (pair && pair->state == EXDS_PAIR_ARMED) {
		__u64 peer = pair->peer_cookie;
		if (bpf_sk_redirect_hash(skb, &skb_socks, &peer, 0) == SK_PASS) {
			if (sock) {
				sock->redirected_bytes += skb->len;
				sock->redirected_skbs++;
			}
			if (st) {
				st->redirected_bytes += skb->len;
				st->redirected_skbs++;
			}
			return SK_PASS;
		}
		/* The peer left the SOCKHASH (it closed). Returning the failed redirect's SK_DROP
		 * would lose the bytes silently; pass them, and user space resets both sides. */
		pair->state = EXDS_PAIR_BROKEN;
		if (st)
			st->redirect_errors++;
	} else if (st) {
		st->unpaired_skbs++;
	}

	if (sock) {
		sock->passed_bytes += skb->len;
		sock->passed_skbs++;
	}
	if (st) {
		st->passed_bytes += skb->len;
		st->passed_skbs++;
	}
	return SK_PASS;
}
