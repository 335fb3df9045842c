// The splice keeper's protocol guards, and the agent side's fallback: when the keeper cannot take
// a pair (here the real keeper, which cannot open the SKB maps and exits), the pair stays with the
// caller, counted, and the sockets still work. The kernel side is in test/system/agent-restart.test.ts.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { socketFd } from '../../src/agent/bpf/socket-syscalls.js';
import { SkbKeeper } from '../../src/agent/proxy/skb-keeper.js';
import { isAgentToKeeper, isKeeperToAgent, type KeeperPairMeta } from '../../src/agent/proxy/skb-keeper-protocol.js';
import { silentLogger } from '../../src/util/log.js';

const meta: KeeperPairMeta = {
  connId: 'c-1',
  listener: 'l',
  downCookie: '1',
  upCookie: '2',
  downstreamToUpstream: { consumed: 0, queued: 0, userBytes: 0 },
  upstreamToDownstream: { consumed: 0, queued: 0, userBytes: 0 },
  drainTimeoutMs: 1000,
  idleTimeoutMs: 0,
};

describe('splice keeper protocol', () => {
  it('accepts the messages each side sends and nothing else', () => {
    expect(isAgentToKeeper({ type: 'socket', connId: 'a', role: 'down', meta })).toBe(true);
    expect(isAgentToKeeper({ type: 'socket', connId: 'a', role: 'up' })).toBe(true);
    expect(isAgentToKeeper({ type: 'reset', connId: 'a', reason: 'x' })).toBe(true);
    expect(isAgentToKeeper({ type: 'forget', connId: 'a' })).toBe(true);
    expect(isAgentToKeeper({ type: 'socket', connId: 'a', role: 'side' })).toBe(false);
    expect(isAgentToKeeper({ type: 'reset', connId: 'a' })).toBe(false);
    expect(isAgentToKeeper({ type: 'socket', role: 'up' })).toBe(false);
    expect(isAgentToKeeper('socket')).toBe(false);
    expect(isKeeperToAgent({ type: 'ready', pid: 1 })).toBe(true);
    expect(isKeeperToAgent({ type: 'adopted', connId: 'a' })).toBe(true);
    expect(isKeeperToAgent({ type: 'refused', connId: 'a', reason: 'r' })).toBe(true);
    expect(isKeeperToAgent({ type: 'ended', connId: 'a', report: { mode: 'kernel', end: 'fin', kernelBytes: { downstreamToUpstream: '0', upstreamToDownstream: '0' } } })).toBe(true);
    expect(isKeeperToAgent({ type: 'ended', connId: 'a' })).toBe(false);
    expect(isKeeperToAgent({ type: 'adopted' })).toBe(false);
    expect(isKeeperToAgent(null)).toBe(false);
  });
});

describe('SkbKeeper when the keeper cannot take a pair', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  async function socketPair(): Promise<[net.Socket, net.Socket]> {
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise<void>((r) => client.once('connect', () => r()));
    const other = await accepted;
    server.close();
    cleanup.push(() => {
      client.destroy();
      other.destroy();
    });
    return [client, other];
  }

  it('the real keeper without SKB maps exits; the pair stays with the caller, counted, and its sockets still carry bytes', async () => {
    const registry = new Registry();
    const keeper = new SkbKeeper({ pinDir: '/nonexistent/ebpf-xds-skb', logger: silentLogger(), registry, respawnDelayMs: 60_000 });
    cleanup.push(() => keeper.close());
    const [a, b] = await socketPair();
    const t = keeper.transfer(meta, socketFd(a), socketFd(b));
    expect(t).toBeDefined();
    const pid = keeper.pid!;
    expect(await t!.adopted).toBe(false);
    const metric = await registry.getSingleMetric('exds_skb_keeper_pairs_total')!.get();
    expect(metric.values).toEqual([{ labels: { outcome: 'agent_keeper_unavailable' }, value: 1 }]);
    // Gone, and not forked again within respawnDelayMs: the next pair stays with the caller at once.
    await new Promise((r) => setTimeout(r, 50));
    expect(() => process.kill(pid, 0)).toThrow();
    expect(keeper.transfer({ ...meta, connId: 'c-2' }, socketFd(a), socketFd(b))).toBeUndefined();
    // The wrappers the keeper was sent are closed; the caller's sockets are untouched.
    const got = new Promise<string>((r) => b.once('data', (d: Buffer) => r(d.toString())));
    a.write('still here');
    expect(await got).toBe('still here');
  }, 30_000);

  it('a keeper that does not answer in time: the pair stays with the caller, and the keeper is told to forget what it got', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'exds-keeper-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // A stand-in keeper (its argv[2] is where the real one finds its pins): it records what
    // arrives and never answers.
    const entry = join(dir, 'silent-keeper.mjs');
    const record = join(dir, 'record.txt');
    writeFileSync(
      entry,
      `import { appendFileSync } from 'node:fs';
process.on('message', (m, h) => appendFileSync(process.argv[2], m.type + (h ? '+handle' : '') + '\\n'));
process.on('disconnect', () => process.exit(0));
`,
    );
    appendFileSync(record, '');
    const registry = new Registry();
    const keeper = new SkbKeeper({ pinDir: record, entry, logger: silentLogger(), registry, adoptTimeoutMs: 500 });
    cleanup.push(() => keeper.close());
    const [a, b] = await socketPair();
    const t = keeper.transfer(meta, socketFd(a), socketFd(b));
    expect(await t!.adopted).toBe(false);
    const metric = await registry.getSingleMetric('exds_skb_keeper_pairs_total')!.get();
    expect(metric.values).toEqual([{ labels: { outcome: 'agent_keeper_unavailable' }, value: 1 }]);
    const until = Date.now() + 5000;
    while (readFileSync(record, 'utf8') !== 'socket+handle\nsocket+handle\nforget\n' && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(readFileSync(record, 'utf8')).toBe('socket+handle\nsocket+handle\nforget\n');
  }, 30_000);
});
