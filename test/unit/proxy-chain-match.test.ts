// Filter chain selection by server name (Envoy's server_names rules) and drop-rule matching.
import { describe, expect, it } from 'vitest';
import { buildChainMatcher } from '../../src/agent/proxy/chain-match.js';
import { buildDenyMatcher, unmapV4 } from '../../src/agent/proxy/deny-match.js';

const chain = (name: string, ...serverNames: string[]) => ({ name, serverNames });

describe('chain matching', () => {
  const chains = [chain('exact', 'api.a.test', 'API2.a.test'), chain('wild-a', '*.a.test'), chain('wild-deep', '*.b.a.test'), chain('wild-tld', '*.test'), chain('default')];
  const m = buildChainMatcher(chains);
  const pick = (sni: string | undefined) => m.match(sni)?.name;

  it('prefers an exact name over any wildcard', () => {
    expect(pick('api.a.test')).toBe('exact');
    expect(pick('api2.a.test')).toBe('exact'); // configured upper-case
    expect(pick('API.A.TEST.')).toBe('exact'); // client upper-case, trailing dot
  });

  it('takes the wildcard with the longest suffix, at any depth', () => {
    expect(pick('x.b.a.test')).toBe('wild-deep');
    expect(pick('y.x.b.a.test')).toBe('wild-deep');
    expect(pick('www.a.test')).toBe('wild-a');
    expect(pick('b.a.test')).toBe('wild-a'); // "*.b.a.test" does not match "b.a.test" itself
    expect(pick('other.test')).toBe('wild-tld');
  });

  it('falls back to the default chain for no match, no SNI and empty SNI', () => {
    expect(pick('example.com')).toBe('default');
    expect(pick('test')).toBe('default');
    expect(pick(undefined)).toBe('default');
    expect(pick('')).toBe('default');
  });

  it('matches nothing when there is no default chain', () => {
    const only = buildChainMatcher([chain('a', 'a.test')]);
    expect(only.match('a.test')?.name).toBe('a');
    expect(only.match('b.test')).toBeUndefined();
    expect(only.match(undefined)).toBeUndefined();
    expect(only.defaultChain).toBeUndefined();
  });

  it('keeps the first chain when names repeat', () => {
    const m2 = buildChainMatcher([chain('first', 'a.test', '*.b.test'), chain('second', 'a.test', '*.b.test'), chain('d1'), chain('d2')]);
    expect(m2.match('a.test')?.name).toBe('first');
    expect(m2.match('x.b.test')?.name).toBe('first');
    expect(m2.defaultChain?.name).toBe('d1');
  });
});

describe('drop rules', () => {
  const m = buildDenyMatcher([
    { name: 'lab', cidr: '192.168.3.0/24', ports: [] },
    { name: 'ssh', cidr: '10.0.0.0/8', ports: [{ start: 22, end: 22 }, { start: 2200, end: 2299 }] },
    { name: 'v6', cidr: '2001:db8::/32', ports: [] },
  ]);

  it('matches the peer address on every port, or on the listed ports', () => {
    expect(m.match('192.168.3.77', 4444)).toBe('lab');
    expect(m.match('192.168.4.1', 4444)).toBeUndefined();
    expect(m.match('10.9.9.9', 22)).toBe('ssh');
    expect(m.match('10.9.9.9', 2250)).toBe('ssh');
    expect(m.match('10.9.9.9', 2300)).toBeUndefined();
    expect(m.match('2001:db8:1::5', 80)).toBe('v6');
    expect(m.match('2001:db9::5', 80)).toBeUndefined();
  });

  it('treats IPv4-mapped peers of dual-stack sockets as IPv4', () => {
    expect(unmapV4('::ffff:192.168.3.1')).toBe('192.168.3.1');
    expect(m.match('::ffff:192.168.3.1', 80)).toBe('lab');
  });

  it('names the rule whose CIDR does not parse', () => {
    expect(() => buildDenyMatcher([{ name: 'bad', cidr: '10.0.0.0/33', ports: [] }])).toThrow(/drop rule "bad": "10.0.0.0\/33" is not a CIDR/);
    expect(() => buildDenyMatcher([{ name: 'bad2', cidr: 'nope', ports: [] }])).toThrow(/bad2/);
  });
});
