// The active health check state machine (Envoy's semantics: the first result decides at once,
// then thresholds of consecutive results), and the TCP checker against real loopback ports.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthState, TcpHealthChecker, type HealthTransition } from '../../src/agent/health.js';
import { silentLogger } from '../../src/util/log.js';

describe('HealthState', () => {
  it('decides on the first result', () => {
    expect(new HealthState({ unhealthyThreshold: 3, healthyThreshold: 2 }).record(true)).toBe('healthy');
    expect(new HealthState({ unhealthyThreshold: 3, healthyThreshold: 2 }).record(false)).toBe('unhealthy');
  });

  it('needs unhealthyThreshold consecutive failures to go unhealthy', () => {
    const s = new HealthState({ unhealthyThreshold: 3, healthyThreshold: 2 });
    s.record(true);
    expect([s.record(false), s.record(false), s.record(true), s.record(false), s.record(false)]).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(s.record(false)).toBe('unhealthy');
    expect(s.status).toBe('unhealthy');
  });

  it('needs healthyThreshold consecutive successes to come back', () => {
    const s = new HealthState({ unhealthyThreshold: 1, healthyThreshold: 3 });
    s.record(false);
    expect([s.record(true), s.record(true), s.record(false), s.record(true), s.record(true)]).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(s.record(true)).toBe('healthy');
  });

  it('treats thresholds below 1 as 1', () => {
    const s = new HealthState({ unhealthyThreshold: 0, healthyThreshold: 0 });
    s.record(true);
    expect(s.record(false)).toBe('unhealthy');
    expect(s.record(true)).toBe('healthy');
  });
});

describe('TcpHealthChecker', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  it('marks a listening port healthy, a closed one unhealthy, and follows it when it comes back', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const open = (server.address() as net.AddressInfo).port;
    const transitions: HealthTransition[] = [];
    const checker = new TcpHealthChecker({
      cluster: 'c',
      config: { intervalMs: 50, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 2 },
      logger: silentLogger(),
      initialJitterMs: 10,
      onTransition: (t) => transitions.push(t),
    });
    cleanup.push(() => checker.stop(), () => server.close());
    checker.setTargets([{ key: 'up', address: '127.0.0.1', port: open }]);
    expect(checker.status('up')).toBe('pending');
    await waitFor(() => checker.status('up') === 'healthy');
    server.close();
    await waitFor(() => checker.status('up') === 'unhealthy');
    const failed = transitions.find((t) => t.to === 'unhealthy')!;
    expect(failed.outcome.result).toBe('refused');
    const again = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => again.listen(open, '127.0.0.1', r));
    cleanup.push(() => again.close());
    await waitFor(() => checker.status('up') === 'healthy');
    expect(transitions.map((t) => `${t.from}->${t.to}`)).toEqual(['pending->healthy', 'healthy->unhealthy', 'unhealthy->healthy']);
  });

  it('fails a refused check at once, and forgets removed targets', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const transitions: HealthTransition[] = [];
    const checker = new TcpHealthChecker({
      cluster: 'c',
      config: { intervalMs: 100, timeoutMs: 500, unhealthyThreshold: 3, healthyThreshold: 1 },
      logger: silentLogger(),
      initialJitterMs: 1,
      onTransition: (t) => transitions.push(t),
    });
    cleanup.push(() => checker.stop());
    checker.setTargets([{ key: 'x', address: '127.0.0.1', port }]);
    await waitFor(() => checker.status('x') === 'unhealthy');
    expect(transitions).toHaveLength(1);
    expect(transitions[0]!.outcome.result).toBe('refused');
    checker.setTargets([]);
    expect(checker.status('x')).toBeUndefined();
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
