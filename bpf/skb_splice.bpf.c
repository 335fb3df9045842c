// SPDX-License-Identifier: GPL-2.0
/* SKB splice: the kernel forwards the bytes of a proxied TCP connection socket to socket.
 *
 * Path of a connection:
 *  1. handover (user space, see docs/bpf.md "pairing contract"): once user space has copied
 *     the first bytes and holds none in flight, it writes both sockets' pairs (skb_pairs) and
 *     puts both sockets into the skb_socks SOCKHASH, whose verdict program is below.
 *  2. the verdict, per received skb: redirect it to the peer socket. A socket only enters the
 *     SOCKHASH already paired, so no byte is ever handed to user space through the psock,
 *     where the kernel can lose it.
 *  3. cgroup/sock_release, when the last file reference to a socket of the proxy's cgroup goes
 *     (its owner closed it, or died): the socket's pair and counters are deleted; the kernel
 *     then removes the socket from the SOCKHASH (sock_map_close).
 * Cleanup follows the socket's owner, never its TCP state. A socket that has sent its FIN goes
 * to TCP_CLOSE as soon as its peer's FIN arrives, and TCP does that (tcp_fin, in
 * tcp_data_queue) BEFORE it runs data_ready for the payload that came in the same segment as
 * that FIN: a pair deleted on TCP_CLOSE is gone when the verdict sees those last bytes
 * (measured: a TLS close_notify held back by Nagle reached user space that way). The socket
 * stays in the SOCKHASH after TCP_CLOSE until it is closed (Linux >= 6.5), so its pair must too.
 * Nothing here is config: pairs and capacities come from user space. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_consts.h"
#include "exds_maps.h"

char LICENSE[] SEC("license") = "GPL";

/* ---- maps (pinned by name under <pin root>/skb/) ---------------------------------------- */

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

/* ---- 2. verdict: redirect to the peer --------------------------------------------------- */

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

/* ---- 3. release: the owner let go of the socket ------------------------------------------ */

SEC("cgroup/sock_release")
int exds_skb_release(struct bpf_sock *sk)
{
	struct exds_skb_stats *st;
	__u64 cookie;
	long a, b;

	if (sk->protocol != IPPROTO_TCP)
		return 1;
	st = stats();
	cookie = bpf_get_socket_cookie(sk);
	/* User space deletes both entries itself when a splice ends; what is left here belonged
	 * to a proxy that died (or never cleaned up): counted apart, so a leak shows. */
	a = bpf_map_delete_elem(&skb_pairs, &cookie);
	b = bpf_map_delete_elem(&skb_sock_stats, &cookie);
	if (st) {
		st->socks_released++;
		if (a == 0 || b == 0)
			st->socks_cleaned++;
	}
	return 1;
}
