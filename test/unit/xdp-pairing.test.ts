import { describe, expect, it } from 'vitest';
import { bytesToIp } from '../../src/agent/bpf/ip-bytes.js';
import { XdpFlag, XdpState } from '../../src/agent/bpf/layout-xdp.js';
import { checkCompatible, keyOf, planEntries, TcpiOpt, type FrozenLeg, type LegCaps } from '../../src/agent/proxy/xdp-pairing.js';

// The pairing arithmetic: which legs may be spliced, and the entries that translate one
// connection's sequence and timestamp spaces into the other's.
const caps = (over: Partial<LegCaps> = {}): LegCaps => ({
  options: TcpiOpt.TIMESTAMPS | TcpiOpt.SACK | TcpiOpt.WSCALE,
  sndWscale: 7,
  rcvWscale: 7,
  sndMss: 1448,
  advmss: 1460,
  ...over,
});

const add = (a: number, b: number) => (a + b) >>> 0;

describe('XDP splice pairing: compatibility of the two legs', () => {
  it('accepts legs that negotiated the same options, scales and MSS', () => {
    expect(checkCompatible(caps(), caps())).toEqual({ ok: true, timestamps: true, rescale: false });
    expect(checkCompatible(caps({ options: TcpiOpt.SACK, sndMss: 1460 }), caps({ options: TcpiOpt.SACK, sndMss: 1460 }))).toEqual({ ok: true, timestamps: false, rescale: false });
  });

  it('refuses options negotiated on one leg only, naming the option and the leg', () => {
    expect(checkCompatible(caps({ options: TcpiOpt.SACK }), caps())).toEqual({ ok: false, reason: 'timestamps negotiated on the server leg only' });
    expect(checkCompatible(caps(), caps({ options: TcpiOpt.TIMESTAMPS }))).toEqual({ ok: false, reason: 'SACK negotiated on the client leg only' });
    expect(checkCompatible(caps({ options: caps().options | TcpiOpt.ECN }), caps())).toMatchObject({ ok: false, reason: expect.stringContaining('ECN') });
  });

  it('rescales different window scales by default, and refuses them under the fallback policy', () => {
    const client = caps({ sndWscale: 0, rcvWscale: 0 }); // a client without window scaling
    expect(checkCompatible(client, caps())).toEqual({ ok: true, timestamps: true, rescale: true });
    const r = checkCompatible(client, caps(), 'fallback');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/window scale: client 0 vs proxy-to-server 7/);
  });

  it('refuses legs whose segments would not fit the other leg', () => {
    // Server leg with a smaller MTU: M2 sends 1388-byte segments, the client may send 1448.
    const r = checkCompatible(caps(), caps({ sndMss: 1388, advmss: 1400 }));
    expect(r).toEqual({ ok: false, reason: 'MSS: the client may send 1448-byte segments, the server leg carries 1388' });
    expect(checkCompatible(caps({ sndMss: 1388, advmss: 1400 }), caps())).toMatchObject({ ok: false, reason: expect.stringMatching(/server may send 1448/) });
    // Without timestamps the option bytes are not deducted.
    expect(checkCompatible(caps({ options: 0, sndMss: 1460 }), caps({ options: 0, sndMss: 1460 }))).toMatchObject({ ok: true });
  });
});

describe('XDP splice pairing: entries', () => {
  const down: FrozenLeg = {
    local: { address: '::ffff:10.0.0.1', port: 4444 },
    remote: { address: '::ffff:10.0.0.2', port: 40000 },
    caps: caps({ sndWscale: 6, rcvWscale: 9 }),
    sndNxt: 0xffff_ff00, // M1's next byte to C (wraps soon)
    rcvNxt: 123_456, // M1 expects C's byte 123456 next
    tsNow: 9_000_000, // M1's clock
    peerTsval: 4_000_000_000, // C's clock
  };
  const up: FrozenLeg = {
    local: { address: '10.1.0.1', port: 50000 },
    remote: { address: '10.1.0.2', port: 9092 },
    caps: caps({ sndWscale: 8, rcvWscale: 5 }),
    sndNxt: 77, // M2's next byte to S
    rcvNxt: 0x8000_0000, // M2 expects S's byte here
    tsNow: 10,
    peerTsval: 0xffff_fff0, // S's clock
  };
  const opts = { idleMs: 30_000, ownerId: 3, nowNs: 42n };

  it('keys each direction by the peer and the proxy socket it talks to, and rewrites to the other leg', () => {
    const plan = planEntries(down, up, { ok: true, timestamps: true, rescale: true }, opts);
    if (!plan.ok) throw new Error(plan.reason);
    const { c2s, s2c } = plan;
    expect([bytesToIp(c2s.key.saddr), bytesToIp(c2s.key.daddr), c2s.key.sport_be, c2s.key.dport_be]).toEqual(['10.0.0.2', '10.0.0.1', 40000, 4444]);
    expect([bytesToIp(c2s.conn.new_saddr), bytesToIp(c2s.conn.new_daddr), c2s.conn.new_sport_be, c2s.conn.new_dport_be]).toEqual(['10.1.0.1', '10.1.0.2', 50000, 9092]);
    expect(s2c.key).toEqual(keyOf(up));
    expect([bytesToIp(s2c.conn.new_saddr), bytesToIp(s2c.conn.new_daddr), s2c.conn.new_sport_be, s2c.conn.new_dport_be]).toEqual(['10.0.0.1', '10.0.0.2', 4444, 40000]);
    for (const e of [c2s, s2c]) {
      expect(e.conn).toMatchObject({ state: XdpState.ACTIVE, flags: XdpFlag.TS | XdpFlag.RESCALE, idle_ms: 30_000, owner_id: 3, last_seen_ns: 42n });
    }
    // C's windows (scaled by C's shift 6) reach S, which reads them with M2's shift 5.
    expect([c2s.conn.wscale_in, c2s.conn.wscale_out]).toEqual([6, 5]);
    expect([s2c.conn.wscale_in, s2c.conn.wscale_out]).toEqual([8, 9]);
  });

  it('maps the next byte of each stream onto the other leg, and acknowledgments back', () => {
    const plan = planEntries(down, up, { ok: true, timestamps: true, rescale: false }, opts);
    if (!plan.ok) throw new Error(plan.reason);
    const { c2s, s2c } = plan;
    // C's next byte (M1's rcv_nxt) becomes M2's next byte to S, and S's next byte becomes M1's.
    expect(add(down.rcvNxt, c2s.conn.seq_delta)).toBe(up.sndNxt);
    expect(add(up.rcvNxt, s2c.conn.seq_delta)).toBe(down.sndNxt);
    // An ACK (or SACK edge) from S for C's byte x + 1000, translated back, names x + 1000.
    const sAck = add(up.sndNxt, 1000);
    expect(add(sAck, s2c.conn.ack_delta)).toBe(add(down.rcvNxt, 1000));
    const cAck = add(down.sndNxt, 5000); // wraps past 2^32
    expect(add(cAck, c2s.conn.ack_delta)).toBe(add(up.rcvNxt, 5000));
  });

  it('continues each receiver\'s view of the timestamp clock and echoes its own values back', () => {
    const plan = planEntries(down, up, { ok: true, timestamps: true, rescale: false }, opts);
    if (!plan.ok) throw new Error(plan.reason);
    const { c2s, s2c } = plan;
    // C's newest TSval arrives at S as M2's current clock (PAWS at S sees no step back).
    expect(add(down.peerTsval!, c2s.conn.tsval_delta)).toBe(up.tsNow);
    expect(add(up.peerTsval!, s2c.conn.tsval_delta)).toBe(down.tsNow);
    // S stamps t, C sees t + d and echoes it; S gets its own t back.
    const t = 0x1234_5678;
    expect(add(add(t, s2c.conn.tsval_delta), c2s.conn.tsecr_delta)).toBe(t);
    expect(add(add(t, c2s.conn.tsval_delta), s2c.conn.tsecr_delta)).toBe(t);
  });

  it('waits for a learned TSval from each peer, and ignores timestamps where none were negotiated', () => {
    const noTs = planEntries({ ...down, peerTsval: undefined }, up, { ok: true, timestamps: true, rescale: false }, opts);
    expect(noTs).toEqual({ ok: false, retry: true, reason: 'no TSval learned yet from the client' });
    const off = planEntries({ ...down, peerTsval: undefined }, { ...up, peerTsval: undefined }, { ok: true, timestamps: false, rescale: false }, opts);
    expect(off.ok && [off.c2s.conn.flags, off.c2s.conn.tsval_delta, off.c2s.conn.tsecr_delta]).toEqual([0, 0, 0]);
  });

  it('refuses IPv6 legs (XDP splice rewrites IPv4 only)', () => {
    expect(() => keyOf({ local: { address: 'fd00::1', port: 1 }, remote: { address: 'fd00::2', port: 2 } })).toThrow(/IPv6: XDP splice rewrites IPv4 only/);
  });
});
