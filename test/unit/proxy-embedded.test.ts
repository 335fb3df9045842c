// EmbeddedProxy on loopback: apply() results and in-place updates, port binding with and without
// the sk_lookup hook, chain selection by SNI, retries, health checks, drop rules, the hand-off
// hooks and their fallbacks, half-close, RST and idle timeout of the user-space copy, metrics.
import net from 'node:net';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredChain, DesiredCluster, DesiredListener, DesiredState } from '../../src/agent/desired-state.js';
import { getSockOptInt, SockOpt, socketFd } from '../../src/agent/bpf/socket-syscalls.js';
import { copyStreams } from '../../src/agent/proxy/copy.js';
import { EmbeddedProxy, type SpliceHooks } from '../../src/agent/proxy/proxy.js';
import { createLogger, silentLogger } from "../../src/util/log.js";

const LO = '127.0.0.1';

interface Backend {
  port: number;
  tag: string;
  accepted: number;
  /** First bytes each connection sent (for SNI routing checks). */
  firsts: Buffer[];
  events: string[];
  close(): Promise<void>;
}

/** Replies "<tag>:" then echoes; half-closes after the client's FIN. */
async function backend(tag: string, port = 0): Promise<Backend> {
  const b: Backend = { port: 0, tag, accepted: 0, firsts: [], events: [], close: async () => undefined };
  const socks = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.write(`${tag}:`);
    let first = true;
    s.on('data', (d: Buffer) => {
      if (first) b.firsts.push(d);
      first = false;
      s.write(d);
    });
    s.on('end', () => {
      b.events.push('end');
      s.end();
    });
    s.on('error', (e: NodeJS.ErrnoException) => b.events.push(e.code ?? 'error'));
  });
  await new Promise<void>((r) => server.listen(port, LO, r));
  b.port = (server.address() as net.AddressInfo).port;
  b.close = () =>
    new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      server.close(() => r());
    });
  return b;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, LO, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Sends `data`, half-closes, and returns everything received until the proxy closes. */
function talk(port: number, data: string | Buffer = 'hi'): Promise<{ reply: string; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: LO, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('connect', () => s.end(data));
    s.on('close', () => resolve({ reply: Buffer.concat(chunks).toString(), ...(error ? { error } : {}) }));
  });
}

const cluster = (name: string, ports: number[], extra: Partial<DesiredCluster> = {}): DesiredCluster => ({
  name,
  lbPolicy: 'round_robin',
  connectTimeoutMs: 1000,
  endpoints: ports.map((port) => ({ address: LO, port, weight: 1, health: 'healthy' })),
  ...extra,
});
const chain = (clusterName: string, serverNames: string[] = [], extra: Partial<DesiredChain> = {}): DesiredChain => ({
  name: serverNames.length ? `route-${clusterName}` : 'default',
  serverNames,
  cluster: clusterName,
  mode: 'userspace',
  statPrefix: `l_${clusterName}`,
  idleTimeoutMs: 0,
  maxConnectAttempts: 1,
  ...extra,
});
const listener = (name: string, port: number, chains: DesiredChain[], extra: Partial<DesiredListener> = {}): DesiredListener => ({
  name,
  address: LO,
  ports: [{ start: port, end: port }],
  mode: 'userspace',
  sniInspection: false,
  chains,
  dropRules: [],
  ...extra,
});

let proxy: EmbeddedProxy;
let registry: Registry;
const backends: Backend[] = [];
const newProxy = (opts: { hooks?: SpliceHooks; inspectTimeoutMs?: number } = {}) => {
  registry = new Registry();
  proxy = new EmbeddedProxy({ logger: process.env.DBG ? createLogger({ level: "debug" }) : silentLogger(), registry, healthInitialJitterMs: 10, ...opts });
  return proxy;
};
const mk = async (tag: string) => {
  const b = await backend(tag);
  backends.push(b);
  return b;
};
async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}

beforeEach(() => newProxy());
afterEach(async () => {
  await proxy.close({ destroyConnections: true });
  for (const b of backends.splice(0)) await b.close();
});

describe('apply', () => {
  it('serves a listener and reports per-listener results; a busy port fails only its listener', async () => {
    const a = await mk('A');
    const [p1, busy] = [await freePort(), await mk('busy')];
    const results = await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('one', p1, [chain('a')]), listener('two', busy.port, [chain('a')])] });
    expect(results[0]).toEqual({ name: 'one', ok: true });
    expect(results[1]!.ok).toBe(false);
    expect(results[1]!.error).toBe(`listener "two": port ${busy.port} on 127.0.0.1 is in use (EADDRINUSE); stop what holds it or change the listener's port`);
    expect((await talk(p1, 'hello')).reply).toBe('A:hello');
    const st = proxy.stats();
    expect(st.listeners.map((l) => l.name)).toEqual(['one']);
    expect(st.listeners[0]!.byPath.userspace).toBe(1);
    expect(await metric('exds_proxy_connections_total', { listener: 'one', path: 'userspace' })).toBe(1);
  });

  it('updates chains and clusters in place: new connections follow, open ones continue', async () => {
    const [a, b] = [await mk('A'), await mk('B')];
    const port = await freePort();
    const state = (to: string): DesiredState => ({ clusters: [cluster('a', [a.port]), cluster('b', [b.port])], listeners: [listener('l', port, [chain(to)])] });
    await proxy.apply(state('a'));
    // An open connection through the old chain.
    const open = net.connect({ host: LO, port, allowHalfOpen: true });
    const got: Buffer[] = [];
    open.on('data', (d: Buffer) => got.push(d));
    await new Promise((r) => open.once('data', r));
    expect(await proxy.apply(state('b'))).toEqual([{ name: 'l', ok: true }]);
    expect((await talk(port)).reply).toBe('B:hi');
    const closed = new Promise((r) => open.once('close', r));
    open.end('still-a');
    await closed;
    expect(Buffer.concat(got).toString()).toBe('A:still-a');
    // Endpoint change (EDS): the cluster's new endpoint takes new connections.
    await proxy.apply({ clusters: [cluster('a', [b.port]), cluster('b', [b.port])], listeners: [listener('l', port, [chain('a')])] });
    expect((await talk(port)).reply).toBe('B:hi');
  });

  it('keeps the previous configuration when an update cannot bind, and closes removed listeners', async () => {
    const a = await mk('A');
    const busy = await mk('busy');
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('l', port, [chain('a')])] });
    const res = await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('l', port, [chain('a')], { ports: [{ start: port, end: port }, { start: busy.port, end: busy.port }] })] });
    expect(res[0]!.error).toMatch(/in use \(EADDRINUSE\)/);
    expect(proxy.stats().listeners[0]!.bound).toEqual([port]);
    expect((await talk(port)).reply).toBe('A:hi');
    await proxy.apply({ clusters: [], listeners: [] });
    expect((await talk(port)).error).toBe('ECONNREFUSED');
    expect(proxy.stats()).toEqual({ listeners: [], clusters: [] });
  });

  it('binds every port of small ranges without sk_lookup, and refuses huge ones with the remedy', async () => {
    const a = await mk('A');
    const p = await freePort();
    const q = await freePort();
    const res = await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('multi', p, [chain('a')], { ports: [{ start: p, end: p }, { start: q, end: q }] })] });
    expect(res[0]!.ok).toBe(true);
    expect((await talk(q)).reply).toBe('A:hi');
    const huge = await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('huge', 20000, [chain('a')], { ports: [{ start: 20000, end: 30000 }] })] });
    expect(huge[0]!.error).toMatch(/listener "huge": 10001 ports .* need sk_lookup steering/);
  });

  it('with a listening hook binds only the first port and reports the socket, then its close', async () => {
    const a = await mk('A');
    const p = await freePort();
    const calls: string[] = [];
    newProxy({ hooks: { listening: (name, server) => void calls.push(`listening ${name} ${(server.address() as net.AddressInfo).port}`), closed: (name) => void calls.push(`closed ${name}`) } });
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('s', p, [chain('a')], { ports: [{ start: p, end: p }, { start: 40000, end: 40100 }] })] });
    expect(proxy.stats().listeners[0]!.bound).toEqual([p]);
    await proxy.apply({ clusters: [], listeners: [] });
    expect(calls).toEqual([`listening s ${p}`, 'closed s']);
  });

  it('closes a new listener again when the sk_lookup hook fails, and says so', async () => {
    const a = await mk('A');
    const p = await freePort();
    newProxy({ hooks: { listening: () => Promise.reject(new Error('SOCKMAP update: E2BIG')) } });
    const res = await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('s', p, [chain('a')])] });
    expect(res[0]!.error).toBe(`listener "s": steering its ports to the socket on port ${p} failed (sk_lookup): SOCKMAP update: E2BIG`);
    expect(proxy.stats().listeners).toEqual([]);
    expect((await talk(p)).error).toBe('ECONNREFUSED');
  });
});

describe('connections', () => {
  it('routes TLS clients by server name: exact, wildcard, default for no SNI and plain TCP', async () => {
    const [a, w, d] = [await mk('A'), await mk('W'), await mk('D')];
    const port = await freePort();
    await proxy.apply({
      clusters: [cluster('a', [a.port]), cluster('w', [w.port]), cluster('d', [d.port])],
      listeners: [listener('sni', port, [chain('a', ['a.test']), chain('w', ['*.w.test']), chain('d')], { sniInspection: true })],
    });
    const hello = (servername?: string) =>
      new Promise<void>((resolve) => {
        const c = tls.connect({ host: LO, port, ...(servername ? { servername } : {}), rejectUnauthorized: false });
        c.on('error', () => resolve());
        c.on('close', () => resolve());
      });
    await hello('a.test');
    await hello('x.y.w.test');
    await hello(); // an IP: no SNI
    expect((await talk(port, 'plain')).reply).toBe('D:plain'); // its FIN arrived during inspection
    expect([a.accepted, w.accepted, d.accepted]).toEqual([1, 1, 2]);
    // The ClientHello reached the backend whole, first.
    expect(a.firsts[0]![0]).toBe(0x16);
    expect(await metric('exds_proxy_sni_total', { listener: 'sni', outcome: 'sni_found' })).toBe(2);
    expect(await metric('exds_proxy_sni_total', { listener: 'sni', outcome: 'sni_not_found' })).toBe(1);
    expect(await metric('exds_proxy_sni_total', { listener: 'sni', outcome: 'not_tls' })).toBe(1);
  });

  it('closes connections no chain matches when there is no default chain', async () => {
    const a = await mk('A');
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('strict', port, [chain('a', ['a.test'])], { sniInspection: true })] });
    expect((await talk(port, 'plain')).reply).toBe('');
    expect(a.accepted).toBe(0);
    expect(await metric('exds_proxy_rejected_total', { listener: 'strict', reason: 'no_chain' })).toBe(1);
  });

  it('continues to the default chain when no ClientHello arrives within the inspection timeout', async () => {
    newProxy({ inspectTimeoutMs: 100 });
    const d = await mk('D');
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('d', [d.port])], listeners: [listener('sni', port, [chain('d')], { sniInspection: true })] });
    const s = net.connect({ host: LO, port });
    const first = await new Promise<string>((r) => s.once('data', (x: Buffer) => r(x.toString())));
    expect(first).toBe('D:'); // a server-first protocol gets its greeting
    s.destroy();
    expect(await metric('exds_proxy_sni_total', { listener: 'sni', outcome: 'timeout' })).toBe(1);
  });

  it('retries another endpoint when a connect fails (max_connect_attempts)', async () => {
    const a = await mk('A');
    const dead = await freePort();
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('c', [dead, a.port])], listeners: [listener('r', port, [chain('c', [], { maxConnectAttempts: 2 })])] });
    for (let i = 0; i < 6; i++) expect((await talk(port)).reply).toBe('A:hi');
    // Round robin advances on the retry's pick too, so most connections meet the dead one first.
    expect(await metric('exds_proxy_connect_failures_total', { cluster: 'c', reason: 'refused' })).toBeGreaterThanOrEqual(5);
    // With one attempt, the connections that pick the dead endpoint are closed.
    await proxy.apply({ clusters: [cluster('c', [dead, a.port])], listeners: [listener('r', port, [chain('c')])] });
    const replies = await Promise.all(Array.from({ length: 6 }, () => talk(port)));
    expect(replies.filter((r) => r.reply === 'A:hi')).toHaveLength(3);
    expect(await metric('exds_proxy_rejected_total', { listener: 'r', reason: 'connect_failed' })).toBe(3);
  });

  it('skips endpoints that fail their health check', async () => {
    const a = await mk('A');
    const dead = await freePort();
    const port = await freePort();
    const hc = { intervalMs: 50, timeoutMs: 200, unhealthyThreshold: 1, healthyThreshold: 1 };
    await proxy.apply({ clusters: [cluster('c', [dead, a.port], { healthCheck: hc })], listeners: [listener('h', port, [chain('c')])] });
    await waitFor(() => proxy.stats().clusters[0]!.endpoints.every((e) => e.activeHealth !== 'pending'));
    const eps = proxy.stats().clusters[0]!.endpoints;
    expect(eps.map((e) => e.activeHealth)).toEqual(['unhealthy', 'healthy']);
    expect(eps.map((e) => e.inHostSet)).toEqual([false, true]);
    for (let i = 0; i < 6; i++) expect((await talk(port)).reply).toBe('A:hi');
    expect(await metric('exds_endpoint_healthy', { cluster: 'c', endpoint: `127.0.0.1:${dead}` })).toBe(0);
    expect(await metric('exds_endpoint_healthy', { cluster: 'c', endpoint: `127.0.0.1:${a.port}` })).toBe(1);
  });

  it('logs one info line per connection with its id and listener, and the hook gets a logger carrying both', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const logger = pino({ level: 'info', base: { pid: 1 } }, sink);
    registry = new Registry();
    proxy = new EmbeddedProxy({
      logger,
      registry,
      hooks: {
        skb: (ctx) => {
          ctx.logger.info({ step: 'hook' }, 'hook saw the pair');
          return { taken: false, reason: 'declined in the test' };
        },
      },
    });
    const a = await mk('A');
    const [p1, p2] = [await freePort(), await freePort()];
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('u', p1, [chain('a')]), listener('k', p2, [chain('a', [], { mode: 'skb' })], { mode: 'skb' })] });
    expect((await talk(p1)).reply).toBe('A:hi');
    expect((await talk(p2)).reply).toBe('A:hi');
    await waitFor(() => lines.filter((l) => l['msg'] === 'connection closed').length === 2);
    const closed = lines.filter((l) => l['msg'] === 'connection closed');
    for (const [l, listenerName, requested] of [
      [closed[0]!, 'u', 'userspace'],
      [closed[1]!, 'k', 'skb'],
    ] as const) {
      expect(l).toMatchObject({ level: 30, component: 'proxy', listener: listenerName, path: 'userspace', requested, chain: 'default', upstream: `${LO}:${a.port}`, end: 'fin', bytes: { user: { downstreamToUpstream: 2, upstreamToDownstream: 4 }, kernel: { total: 0 } } });
      expect(l['conn']).toMatch(/^[0-9a-f]{6}-[0-9a-z]+$/);
      expect(Object.keys(l).slice(0, 6)).toEqual(['level', 'time', 'pid', 'component', 'conn', 'listener']);
    }
    const hook = lines.find((l) => l['msg'] === 'hook saw the pair');
    const fallback = lines.find((l) => l['msg'] === 'copying in user space instead of skb');
    expect(hook).toMatchObject({ listener: 'k', conn: closed[1]!['conn'], step: 'hook' });
    expect(fallback).toMatchObject({ level: 40, listener: 'k', conn: closed[1]!['conn'], reason: 'declined in the test' });
    expect(closed[0]!['conn']).not.toBe(closed[1]!['conn']);
  });

  it('denies peers matched by a drop rule', async () => {
    const a = await mk('A');
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('d', port, [chain('a')], { dropRules: [{ name: 'lo', cidr: '127.0.0.0/8', ports: [] }] })] });
    expect((await talk(port)).reply).toBe('');
    expect(a.accepted).toBe(0);
    expect(await metric('exds_proxy_denied_total', { listener: 'd', rule: 'lo' })).toBe(1);
  });
});

describe('hand-off', () => {
  const setup = async (hooks: SpliceHooks | undefined, mode: 'skb' | 'xdp') => {
    newProxy(hooks ? { hooks } : {});
    const a = await mk('A');
    const port = await freePort();
    await proxy.apply({ clusters: [cluster('a', [a.port])], listeners: [listener('k', port, [chain('a', [], { mode })], { mode })] });
    return port;
  };

  it('copies in user space, counted as a fallback, when the mode has no hook', async () => {
    const port = await setup(undefined, 'xdp');
    expect((await talk(port)).reply).toBe('A:hi');
    expect(await metric('exds_proxy_fallbacks_total', { listener: 'k', requested: 'xdp', reason: 'no_hook' })).toBe(1);
    expect(await metric('exds_proxy_connections_total', { listener: 'k', path: 'userspace' })).toBe(1);
  });

  it('copies when the hook declines or throws', async () => {
    let port = await setup({ skb: () => ({ taken: false, reason: 'not today' }) }, 'skb');
    expect((await talk(port)).reply).toBe('A:hi');
    expect(await metric('exds_proxy_fallbacks_total', { listener: 'k', requested: 'skb', reason: 'declined' })).toBe(1);
    await proxy.close();
    port = await setup({ skb: () => Promise.reject(new Error('map full')) }, 'skb');
    expect((await talk(port)).reply).toBe('A:hi');
    expect(await metric('exds_proxy_fallbacks_total', { listener: 'k', requested: 'skb', reason: 'hook_error' })).toBe(1);
  });

  it('sets TCP_NODELAY on both legs of the copy only, after a hook declined with them untouched', async () => {
    const TCP_NODELAY = 1;
    const nodelay = (sock: net.Socket) => getSockOptInt(socketFd(sock), SockOpt.IPPROTO_TCP, TCP_NODELAY);
    const legs: net.Socket[] = [];
    const atHook: number[] = [];
    const port = await setup(
      {
        skb: (ctx) => {
          legs.push(ctx.downstream, ctx.upstream);
          atHook.push(nodelay(ctx.downstream), nodelay(ctx.upstream));
          return { taken: false, reason: 'look at the options' };
        },
      },
      'skb',
    );
    // Keep the connection open while the options are read: the client half-closes later.
    const client = net.connect({ host: LO, port, allowHalfOpen: true });
    const replied = new Promise((r) => client.once('data', r));
    await replied;
    expect(atHook).toEqual([0, 0]);
    expect(legs.map(nodelay).map((v) => v !== 0)).toEqual([true, true]);
    const closed = new Promise((r) => client.once('close', r));
    client.end();
    client.resume();
    await closed;
  });

  it('counts the path a taking hook reports, with the initial bytes and interface handed over', async () => {
    const seen: string[] = [];
    const port = await setup(
      {
        xdp: (ctx) => {
          seen.push(`${ctx.listener} ${ctx.initial.length} ${ctx.connId.length > 0} ${ctx.downstream.isPaused()} ${ctx.upstream.isPaused()}`);
          const done = copyStreams(ctx.downstream, ctx.upstream, { initial: ctx.initial }).then((r) => ({
            path: 'xdp' as const,
            userBytes: { downstreamToUpstream: 0, upstreamToDownstream: 0 },
            kernelBytes: { total: r.downstreamToUpstream + r.upstreamToDownstream },
            end: r.end,
          }));
          return { taken: true, done };
        },
      },
      'xdp',
    );
    expect((await talk(port)).reply).toBe('A:hi');
    expect(seen).toEqual(['k 0 true true true']);
    expect(await metric('exds_proxy_connections_total', { listener: 'k', path: 'xdp' })).toBe(1);
    expect(await metric('exds_proxy_fallbacks_total', { listener: 'k', requested: 'xdp', reason: 'no_hook' })).toBe(0);
  });
});

describe('user-space copy', () => {
  const setup = async (extra: Partial<DesiredChain> = {}) => {
    const port = await freePort();
    let client!: net.Socket;
    const server = net.createServer({ allowHalfOpen: true });
    const up = new Promise<net.Socket>((r) => server.once('connection', r));
    await new Promise<void>((r) => server.listen(0, LO, r));
    const socks: net.Socket[] = [];
    server.on('connection', (s) => socks.push(s));
    backends.push({
      port: 0,
      tag: '',
      accepted: 0,
      firsts: [],
      events: [],
      close: () =>
        new Promise<void>((r) => {
          for (const s of socks) s.destroy();
          client.destroy();
          server.close(() => r());
        }),
    });
    await proxy.apply({ clusters: [cluster('s', [(server.address() as net.AddressInfo).port])], listeners: [listener('c', port, [chain('s', [], extra)])] });
    client = net.connect({ host: LO, port, allowHalfOpen: true });
    await new Promise((r) => client.once('connect', r));
    client.write('x');
    const upstream = await up;
    await new Promise((r) => upstream.once('data', r));
    return { client, upstream };
  };

  it('propagates a half-close and keeps the other direction flowing', async () => {
    const { client, upstream } = await setup();
    const upEnded = new Promise((r) => upstream.once('end', r));
    client.end();
    await upEnded;
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => got.push(d));
    const clientEnded = new Promise((r) => client.once('end', r));
    upstream.end(Buffer.alloc(1 << 20, 1)); // 1 MiB after the client's FIN
    await clientEnded;
    expect(Buffer.concat(got).length).toBe(1 << 20);
  });

  it('turns an RST from one side into an RST on the other', async () => {
    const { client, upstream } = await setup();
    const err = new Promise<string>((r) => upstream.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')));
    client.resetAndDestroy();
    expect(await err).toBe('ECONNRESET');
  });

  it('closes both sides after the idle timeout', async () => {
    const { client, upstream } = await setup({ idleTimeoutMs: 150 });
    const started = Date.now();
    // Both were half-open capable: the proxy's close shows as end of stream on each.
    await Promise.all([new Promise((r) => client.once('end', r)), new Promise((r) => upstream.once('end', r))]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    await waitFor(async () => (await metric('exds_proxy_idle_timeouts_total', { listener: 'c' })) === 1);
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
