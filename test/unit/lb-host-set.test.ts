// Which endpoints a cluster balances over: CLA health, active health checks, degraded endpoints
// as a reserve, and Envoy's panic threshold with the 1.4 overprovisioning factor.
import { describe, expect, it } from 'vitest';
import type { EndpointHealth } from '../../src/agent/desired-state.js';
import { hostSetSignature, selectHostSet, type ActiveHealth, type HealthView } from '../../src/agent/proxy/lb.js';

const ep = (i: number, eds: EndpointHealth = 'healthy', active: ActiveHealth = 'unchecked', weight = 1): HealthView => ({ key: `10.0.0.${i}:80`, address: `10.0.0.${i}`, port: 80, weight, eds, active });
const keys = (s: { hosts: { key: string }[] }) => s.hosts.map((h) => h.key);

describe('host set selection', () => {
  it('uses HEALTHY and UNKNOWN endpoints that pass their check', () => {
    const s = selectHostSet([ep(1), ep(2, 'unknown'), ep(3, 'healthy', 'healthy'), ep(4, 'healthy', 'unhealthy'), ep(5, 'unhealthy'), ep(6, 'draining'), ep(7, 'timeout')]);
    expect(s.tier).toBe('healthy');
    expect(keys(s)).toEqual(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
    expect(s.healthPercent).toBe(60);
  });

  it('does not pick endpoints whose first check is still pending', () => {
    const s = selectHostSet([ep(1, 'healthy', 'healthy'), ep(2, 'healthy', 'pending')]);
    expect(keys(s)).toEqual(['10.0.0.1:80']);
  });

  it('counts a cluster with 1 of 2 healthy as 70% healthy: no panic', () => {
    const s = selectHostSet([ep(1, 'healthy', 'healthy'), ep(2, 'healthy', 'unhealthy')]);
    expect(s.tier).toBe('healthy');
    expect(s.healthPercent).toBeCloseTo(70);
  });

  it('panics below the threshold and balances over every endpoint but draining ones', () => {
    const s = selectHostSet([ep(1, 'healthy', 'healthy'), ep(2, 'healthy', 'unhealthy'), ep(3, 'unhealthy'), ep(4, 'draining')]);
    expect(s.healthPercent).toBeCloseTo(35);
    expect(s.tier).toBe('panic');
    expect(keys(s)).toEqual(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
    // All checks pending (a new cluster): panic, so traffic flows before the first results.
    expect(selectHostSet([ep(1, 'healthy', 'pending'), ep(2, 'healthy', 'pending')]).tier).toBe('panic');
  });

  it('keeps degraded endpoints as a reserve for when no healthy one is left', () => {
    expect(keys(selectHostSet([ep(1), ep(2, 'degraded')]))).toEqual(['10.0.0.1:80']);
    const s = selectHostSet([ep(1, 'healthy', 'unhealthy'), ep(2, 'degraded'), ep(3, 'degraded')]);
    expect(s.tier).toBe('degraded');
    expect(keys(s)).toEqual(['10.0.0.2:80', '10.0.0.3:80']);
  });

  it('honours a custom threshold, and 0 disables panic', () => {
    const views = [ep(1, 'healthy', 'healthy'), ep(2, 'unhealthy'), ep(3, 'unhealthy')];
    expect(selectHostSet(views, 50).tier).toBe('panic');
    expect(selectHostSet(views, 40).tier).toBe('healthy');
    const none = selectHostSet([ep(1, 'unhealthy'), ep(2, 'unhealthy')], 0);
    expect(none.tier).toBe('none');
    expect(none.hosts).toEqual([]);
    expect(selectHostSet([ep(1, 'draining')]).tier).toBe('none');
    expect(selectHostSet([]).tier).toBe('none');
  });

  it('signs a host set by keys and weights', () => {
    expect(hostSetSignature([ep(1), ep(2, 'healthy', 'unchecked', 3)])).toBe('10.0.0.1:80*1,10.0.0.2:80*3');
  });
});
