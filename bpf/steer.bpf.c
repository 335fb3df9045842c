// SPDX-License-Identifier: GPL-2.0
/* sk_lookup port steering: a connection to any configured port (or port of a range) of a listener
 * lands on that listener's one listening socket, whatever port it listens on itself.
 *
 * Path of a lookup: the kernel asks us before its own socket lookup. We look the destination up
 * in steer_ports, first by exact local address and then by "any address"; a hit names a slot in
 * steer_socks (SOCKMAP of listening sockets, filled by user space) and we assign that socket.
 * No hit, or no socket in the slot: the kernel's normal lookup decides. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_consts.h"
#include "exds_maps.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct exds_steer_key);
	__type(value, struct exds_steer_val);
	__uint(max_entries, EXDS_MAX_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);    /* slot */
	__type(value, __u64);  /* listening socket (fd from user space, cookie when read back) */
	__uint(max_entries, EXDS_MAX_LISTENERS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_steer_stats);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_stats SEC(".maps");

SEC("sk_lookup")
int exds_steer(struct bpf_sk_lookup *ctx)
{
	struct exds_steer_key key = {
		.port = (__u16)ctx->local_port,
		.proto = (__u8)ctx->protocol,
	};
	if (ctx->family == AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__u32 ip4 = ctx->local_ip4;
		__builtin_memcpy(&key.addr[12], &ip4, 4);
	} else if (ctx->family == AF_INET6) {
		__u32 ip6[4] = { ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3] };
		__builtin_memcpy(key.addr, ip6, 16);
	} else {
		return SK_PASS;
	}

	struct exds_steer_val *val = bpf_map_lookup_elem(&steer_ports, &key);
	if (!val) {
		__builtin_memset(key.addr, 0, sizeof(key.addr));
		val = bpf_map_lookup_elem(&steer_ports, &key);
		if (!val)
			return SK_PASS;
	}

	__u32 zero = 0;
	struct exds_steer_stats *st = bpf_map_lookup_elem(&steer_stats, &zero);
	if (st)
		st->matched++;

	__u32 slot = val->slot;
	struct bpf_sock *sk = bpf_map_lookup_elem(&steer_socks, &slot);
	if (!sk) {
		if (st)
			st->no_socket++;
		return SK_PASS;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (st) {
		if (err)
			st->assign_errors++;
		else
			st->assigned++;
	}
	return SK_PASS;
}
