/* XDP drop rules: the maps and the match, in a header so that any XDP program on an interface
 * (the firewall program, or a splice program that owns the interface's one XDP slot) applies the
 * same rules with the same counters. A source address is matched against an LPM trie of IPv4
 * and IPv6 CIDRs, first for rules scoped to the packet's destination port, then for rules that
 * cover every port. A match drops the packet and counts it on the rule's per-CPU counter. */
#ifndef EXDS_FIREWALL_H
#define EXDS_FIREWALL_H

#include "exds_consts.h"
#include "exds_maps.h"
#include "exds_parsing.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct exds_fw_key);
	__type(value, struct exds_fw_rule);
	__uint(max_entries, EXDS_MAX_FW_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_fw_counter);
	__uint(max_entries, EXDS_MAX_FW_RULES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exds_fw_stats);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_stats SEC(".maps");

static __always_inline struct exds_fw_stats *exds_fw_stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&fw_stats, &zero);
}

/* Returns XDP_DROP when a rule matches the parsed packet, XDP_PASS otherwise. */
static __always_inline int exds_fw_check(struct exds_pkt *p, __u32 frame_len)
{
	struct exds_fw_key key = { .prefixlen = 16 + 128 };
	__builtin_memcpy(key.addr, p->saddr, 16);

	struct exds_fw_rule *rule = NULL;
	if (p->dport) {
		key.port_be = p->dport;
		rule = bpf_map_lookup_elem(&fw_rules, &key);
	}
	if (!rule) {
		key.port_be = 0;
		rule = bpf_map_lookup_elem(&fw_rules, &key);
	}
	struct exds_fw_stats *st = exds_fw_stats();
	if (!rule) {
		if (st)
			st->passed++;
		return XDP_PASS;
	}
	__u32 index = rule->index;
	struct exds_fw_counter *c = bpf_map_lookup_elem(&fw_counters, &index);
	if (c) {
		c->packets++;
		c->bytes += frame_len;
	}
	if (st)
		st->dropped++;
	return XDP_DROP;
}

#endif
