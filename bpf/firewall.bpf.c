// SPDX-License-Identifier: GPL-2.0
/* XDP drop rules for one interface: parse, match the source against the rules, drop or pass.
 * Frames we cannot parse, and everything that is not IP, pass untouched: the rules drop what
 * they name and nothing else. xdp.frags: the program reads headers only, so it is safe with
 * multi-buffer frames, and it does not cap the interface MTU. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "exds_firewall.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp.frags")
int exds_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct exds_pkt pkt;

	int res = exds_parse(data, data_end, &pkt);
	if (res != EXDS_PARSE_OK) {
		struct exds_fw_stats *st = exds_fw_stats();
		if (st) {
			if (res == EXDS_PARSE_NOT_IP)
				st->not_ip++;
			else
				st->malformed++;
		}
		return XDP_PASS;
	}
	return exds_fw_check(&pkt, (__u32)(data_end - data));
}
