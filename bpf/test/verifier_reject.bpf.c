// SPDX-License-Identifier: GPL-2.0
/* Test fixture: compiles, but the verifier must reject it (packet read without a bounds check).
 * The loader test uses it to prove that a rejection carries the verifier's log. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int exds_test_reject(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	return data[64] == 0x42 ? XDP_DROP : XDP_PASS;
}
