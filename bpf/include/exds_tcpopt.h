/* TCP options for programs that translate a connection's sequence and timestamp spaces: one
 * bounded, verifier-friendly walk over the options (any order, at most 40 bytes) that records
 * where the Timestamps and SACK options sit, then rewrites of exactly those fields with
 * incremental checksum updates. The walk validates before anything is written, so a packet
 * with malformed options is left untouched (RFC 9293 3.1 option format; RFC 7323 3 TS; RFC 2018
 * 3 SACK; RFC 2883 D-SACK is a SACK block like any other and needs nothing extra).
 *
 * Checksum note: a 32-bit option field may start at any byte offset. RFC 1071 sums 16-bit
 * words aligned to the start of the TCP header, so a field at an odd offset contributes its
 * bytes swapped (RFC 1071 2(B)); exds_tcpopt_fold_into applies that per option. */
#ifndef EXDS_TCPOPT_H
#define EXDS_TCPOPT_H

#include "exds_csum.h"

#define EXDS_TCPOPT_EOL       0
#define EXDS_TCPOPT_NOP       1
#define EXDS_TCPOPT_SACK      5
#define EXDS_TCPOPT_TS        8
#define EXDS_TCPOLEN_TS       10
#define EXDS_TCPOPT_MAX_LEN   40  /* 60-byte header limit minus the fixed 20 bytes */
/* Options of at least 10 bytes (TS, SACK) that fit in 40 bytes. */
#define EXDS_TCPOPT_MAX_HITS  4

enum exds_tcpopt_result {
	EXDS_TCPOPT_OK = 0,
	EXDS_TCPOPT_MALFORMED = 1, /* a length runs past the header or is below 2 */
};

/* Where the options we translate sit, as offsets from the first option byte. */
struct exds_tcpopt {
	__u8 n;                            /* hits recorded */
	__u8 ts_at;                        /* offset + 1 of the last TS option; 0 = none */
	__u8 at[EXDS_TCPOPT_MAX_HITS];     /* offsets of TS and SACK options */
	__u8 kind[EXDS_TCPOPT_MAX_HITS];
	__u8 len[EXDS_TCPOPT_MAX_HITS];
};

/* One step of the option walk, run by bpf_loop: the verifier checks this body once, where an
 * inline 40-round loop with a branch per option kind multiplies its paths past the limit. */
struct exds_tcpopt_walk {
	__u8 *opts;        /* first option byte (packet pointer) */
	void *data_end;
	__u32 optlen;      /* 0..40 */
	__u32 off;
	__u32 result;      /* enum exds_tcpopt_result */
	__u32 _pad;
	struct exds_tcpopt o;
};

static long exds_tcpopt_step(__u32 i, void *ctx)
{
	struct exds_tcpopt_walk *w = ctx;
	__u32 off = w->off & 0x3f;
	__u32 optlen = w->optlen & 0x3f;
	if (off >= optlen)
		return 1;
	__u8 *p = w->opts + off;
	if ((void *)(p + 1) > w->data_end)
		goto malformed;
	__u8 kind = p[0];
	if (kind == EXDS_TCPOPT_EOL)
		return 1;
	if (kind == EXDS_TCPOPT_NOP) {
		w->off = off + 1;
		return 0;
	}
	if ((void *)(p + 2) > w->data_end)
		goto malformed;
	__u32 len = p[1];
	if (len < 2 || off + len > optlen)
		goto malformed;
	if (kind == EXDS_TCPOPT_TS || kind == EXDS_TCPOPT_SACK) {
		if (kind == EXDS_TCPOPT_TS ? len != EXDS_TCPOLEN_TS : (len < 10 || ((len - 2) & 7) != 0))
			goto malformed; /* wrong length for the kind: do not guess */
		__u32 n = w->o.n;
		if (n < EXDS_TCPOPT_MAX_HITS) {
			w->o.at[n] = off;
			w->o.kind[n] = kind;
			w->o.len[n] = len;
			w->o.n = n + 1;
		}
		if (kind == EXDS_TCPOPT_TS)
			w->o.ts_at = off + 1;
	}
	w->off = off + len;
	return 0;
malformed:
	w->result = EXDS_TCPOPT_MALFORMED;
	return 1;
}

/* Walks the options of tcp (doff already checked against data_end by the parser). */
static __always_inline int exds_tcpopt_scan(struct tcphdr *tcp, void *data_end, struct exds_tcpopt *o)
{
	__u32 optlen = ((__u32)tcp->doff * 4) & 0x3f;
	o->n = 0;
	o->ts_at = 0;
	if (optlen <= 20)
		return EXDS_TCPOPT_OK;
	optlen -= 20;

	/* The layouts Linux sends on an established connection, matched byte for byte (anything
	 * else takes the general walk below, with the same result): NOP NOP TS, optionally followed
	 * by NOP NOP SACK with 1 to 3 blocks. This saves the bpf_loop calls on almost every packet. */
	__u8 *opts = (__u8 *)(tcp + 1);
	if ((void *)(opts + 12) <= data_end && *(__u32 *)opts == bpf_htonl(0x0101080a)) {
		if (optlen == 12) {
			o->n = 1;
			o->at[0] = 2;
			o->kind[0] = EXDS_TCPOPT_TS;
			o->len[0] = EXDS_TCPOLEN_TS;
			o->ts_at = 3;
			return EXDS_TCPOPT_OK;
		}
		if ((void *)(opts + 16) <= data_end && optlen >= 24 && optlen <= 40 &&
		    *(__u32 *)(opts + 12) == bpf_htonl(0x01010500 | (optlen - 14))) {
			o->n = 2;
			o->at[0] = 2;
			o->kind[0] = EXDS_TCPOPT_TS;
			o->len[0] = EXDS_TCPOLEN_TS;
			o->at[1] = 14;
			o->kind[1] = EXDS_TCPOPT_SACK;
			o->len[1] = optlen - 14;
			o->ts_at = 3;
			/* SACK length 2 + 8n: optlen - 14 = 10, 18, 26 */
			if (((optlen - 16) & 7) == 0)
				return EXDS_TCPOPT_OK;
			o->n = 0;
			o->ts_at = 0;
		}
	}

	struct exds_tcpopt_walk w = {
		.opts = opts,
		.data_end = data_end,
		.optlen = optlen,
	};
	/* Each step consumes at least one byte, so 40 steps cover every layout. */
	bpf_loop(EXDS_TCPOPT_MAX_LEN, exds_tcpopt_step, &w, 0);
	*o = w.o;
	return w.result;
}

/* The TSval of the last TS option found by the scan (host order); 0 when there is none. */
static __always_inline __u32 exds_tcpopt_tsval(struct tcphdr *tcp, void *data_end, const struct exds_tcpopt *o)
{
	if (!o->ts_at)
		return 0;
	__u32 off = (__u32)(o->ts_at - 1) & 0x3f;
	__u8 *p = (__u8 *)(tcp + 1) + off;
	if ((void *)(p + EXDS_TCPOLEN_TS) > data_end)
		return 0;
	return bpf_ntohl(*(__u32 *)(p + 2));
}

/* Adds `add` (host order) to the 32-bit field at p and returns the change as an unfolded sum
 * of 16-bit words (~old + new), to be folded once per option. Fields that are zero stay zero
 * when keep_zero is set (a TSecr of 0 means "nothing to echo"). */
static __always_inline __u32 exds_tcpopt_add32(__u8 *p, __u32 add, __u32 keep_zero)
{
	__u32 old = *(__u32 *)p;
	if (keep_zero && old == 0)
		return 0;
	__u32 new = bpf_htonl(bpf_ntohl(old) + add);
	*(__u32 *)p = new;
	return (__u32)(__u16)~(old >> 16) + (__u16)~old + (new >> 16) + (__u16)new;
}

/* Folds one option's word sum into the checksum delta; an option at an odd offset contributes
 * its bytes swapped (RFC 1071 2(B)). All fields of an option share the option's parity. */
static __always_inline __u32 exds_tcpopt_fold_into(__u32 delta, __u32 part, __u32 odd)
{
	part = exds_csum_fold(part);
	if (odd)
		part = ((part & 0xff) << 8) | (part >> 8);
	return exds_csum_fold(delta + part);
}

/* Translates every recorded TS option (TSval += tsval_add, TSecr += tsecr_add) and every SACK
 * block edge (+= sack_add). Returns the TCP checksum delta to apply. Cost depends on the
 * options present, never on the payload. */
static __always_inline __u32 exds_tcpopt_translate(struct tcphdr *tcp, void *data_end, const struct exds_tcpopt *o,
						   __u32 tsval_add, __u32 tsecr_add, __u32 sack_add, __u32 delta)
{
	__u8 *opts = (__u8 *)(tcp + 1);
	for (int i = 0; i < EXDS_TCPOPT_MAX_HITS; i++) {
		if (i >= o->n)
			break;
		__u32 off = (__u32)o->at[i] & 0x3f;
		__u8 *p = opts + off;
		__u32 part = 0; /* at most 8 edges x 4 words x 0xffff: no overflow before the fold */
		if (o->kind[i] == EXDS_TCPOPT_TS) {
			if ((void *)(p + EXDS_TCPOLEN_TS) > data_end)
				break;
			part += exds_tcpopt_add32(p + 2, tsval_add, 0);
			part += exds_tcpopt_add32(p + 6, tsecr_add, 1);
		} else {
			__u32 blocks = ((__u32)o->len[i] - 2) >> 3;
			for (int b = 0; b < 4; b++) {
				if (b >= blocks)
					break;
				__u8 *edge = p + 2 + b * 8;
				if ((void *)(edge + 8) > data_end)
					break;
				part += exds_tcpopt_add32(edge, sack_add, 0);
				part += exds_tcpopt_add32(edge + 4, sack_add, 0);
			}
		}
		/* The option's own first byte sets the parity: TCP header offset 20 is even. */
		delta = exds_tcpopt_fold_into(delta, part, off & 1);
	}
	return delta;
}

#endif
