/* Incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), for programs
 * that rewrite header fields. The cost is per changed 16-bit word, never per payload byte.
 * Accumulate every change of one packet in a delta, then apply it once per checksum:
 *
 *     __u32 d = 0;
 *     d = exds_csum_diff32(d, ip->saddr, new_saddr);
 *     d = exds_csum_diff16(d, tcp->source, new_sport);
 *     exds_csum_apply(&tcp->check, d);
 *
 * Byte order does not matter as long as old and new values are in the same order as the data
 * (RFC 1071, section 2(B)); pass fields as they sit in the packet. For UDP over IPv4 a result of
 * 0 must be sent as 0xffff (0 means "no checksum"): use exds_csum_apply_udp. */
#ifndef EXDS_CSUM_H
#define EXDS_CSUM_H

static __always_inline __u16 exds_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Adds the change of one 16-bit word (old -> new) to the delta. */
static __always_inline __u32 exds_csum_diff16(__u32 delta, __u16 old, __u16 new)
{
	delta += (__u16)~old;
	delta += new;
	return exds_csum_fold(delta);
}

/* Adds the change of one 32-bit field (two words) to the delta. */
static __always_inline __u32 exds_csum_diff32(__u32 delta, __u32 old, __u32 new)
{
	delta = exds_csum_diff16(delta, (__u16)(old >> 16), (__u16)(new >> 16));
	return exds_csum_diff16(delta, (__u16)old, (__u16)new);
}

/* Adds the change of a 16-byte field (an IPv6 address) to the delta. */
static __always_inline __u32 exds_csum_diff128(__u32 delta, const __u32 old[4], const __u32 new[4])
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		delta = exds_csum_diff32(delta, old[i], new[i]);
	return delta;
}

/* Applies an accumulated delta to a stored checksum field. */
static __always_inline void exds_csum_apply(__u16 *check, __u32 delta)
{
	__u32 sum = (__u16)~*check;
	sum += delta;
	*check = (__u16)~exds_csum_fold(sum);
}

static __always_inline void exds_csum_apply_udp(__u16 *check, __u32 delta)
{
	if (*check == 0)
		return; /* IPv4 UDP without checksum stays without */
	exds_csum_apply(check, delta);
	if (*check == 0)
		*check = 0xffff;
}

/* One-shot variants for a single field. */
static __always_inline void exds_csum_replace2(__u16 *check, __u16 old, __u16 new)
{
	exds_csum_apply(check, exds_csum_diff16(0, old, new));
}

static __always_inline void exds_csum_replace4(__u16 *check, __u32 old, __u32 new)
{
	exds_csum_apply(check, exds_csum_diff32(0, old, new));
}

#endif
