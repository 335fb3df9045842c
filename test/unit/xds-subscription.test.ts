// The examples of xds_protocol.rst, "How the client specifies what resources to return".
import { describe, expect, it } from 'vitest';
import { Subscription } from '../../src/xds/subscription.js';

describe('SotW subscription', () => {
  it('follows the spec example: legacy wildcard, "*" plus a name, the name alone, then empty', () => {
    const s = new Subscription(true);
    expect(s.applySotw([])).toMatchObject({ wildcardAdded: true });
    expect(s.wildcard).toBe(true);
    expect(s.applySotw(['*', 'A'])).toMatchObject({ added: ['A'], wildcardAdded: false, wildcardRemoved: false });
    expect(s.wildcard).toBe(true);
    expect(s.applySotw(['A'])).toMatchObject({ added: [], removed: [], wildcardRemoved: true });
    expect(s.wildcard).toBe(false);
    expect(s.applySotw([])).toMatchObject({ removed: ['A'], wildcardAdded: false });
    expect(s.wildcard).toBe(false);
    expect(s.includes('A')).toBe(false);
  });

  it('has no legacy wildcard for types other than LDS/CDS', () => {
    const s = new Subscription(false);
    expect(s.applySotw([])).toMatchObject({ added: [], wildcardAdded: false });
    expect(s.wildcard).toBe(false);
    s.applySotw(['*']);
    expect(s.wildcard).toBe(true);
  });

  it('reports added and removed names when the list is replaced, nothing when repeated', () => {
    const s = new Subscription(false);
    expect(s.applySotw(['a', 'b'])).toMatchObject({ added: ['a', 'b'], removed: [] });
    expect(s.applySotw(['a', 'b'])).toMatchObject({ added: [], removed: [] });
    expect(s.applySotw(['b', 'c'])).toMatchObject({ added: ['c'], removed: ['a'] });
    expect([...s.names]).toEqual(['b', 'c']);
  });
});

describe('delta subscription', () => {
  it('follows the spec example: legacy wildcard, add A, drop "*", drop A', () => {
    const s = new Subscription(true);
    expect(s.applyDelta([], [], true)).toMatchObject({ wildcardAdded: true });
    expect(s.applyDelta(['A'], [], false)).toMatchObject({ added: ['A'] });
    expect(s.wildcard).toBe(true);
    expect(s.applyDelta([], ['*'], false)).toMatchObject({ wildcardRemoved: true });
    expect(s.wildcard).toBe(false);
    expect(s.includes('A')).toBe(true);
    expect(s.applyDelta([], ['A'], false)).toMatchObject({ removed: ['A'] });
    expect(s.includes('A')).toBe(false);
    expect(s.wildcard).toBe(false);
  });

  it('later empty requests (ACKs) change nothing; phantom unsubscribes are ignored', () => {
    const s = new Subscription(true);
    s.applyDelta(['x'], [], true);
    expect(s.wildcard).toBe(false);
    expect(s.applyDelta([], [], false)).toMatchObject({ added: [], removed: [] });
    expect(s.applyDelta([], ['never-subscribed'], false)).toMatchObject({ removed: [] });
  });

  it('re-subscribing a held name reports it as added (the client may have forgotten it)', () => {
    const s = new Subscription(false);
    s.applyDelta(['a'], [], true);
    expect(s.applyDelta(['a'], [], false).added).toEqual(['a']);
  });
});
