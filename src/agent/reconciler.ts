// The reconciler owns every BPF object, link and pin of the agent (through the per-concern
// reconcile-*.ts modules) and, in embedded mode, drives the proxy. apply() converges the node to
// a DesiredState: attach what is new, update maps in place for what changed, detach what was
// removed (keeping datapaths that still carry spliced pairs until they drain). Each step is
// idempotent and logged. A listener that cannot be applied (interface missing, verifier error,
// port in use) fails alone, with an error naming it and the reason; its previous version, if
// any, keeps serving, as Envoy keeps a listener whose update it rejected.
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AttachProbe } from './attach-probe.js';
import type { PinLayout } from './bpf/pins.js';
import { registerXdpMetrics } from './bpf/metrics-xdp.js';
import type { ProxyMode } from './decode.js';
import type { DesiredCluster, DesiredListener, DesiredState } from './desired-state.js';
import { egressInterface, listInterfaces, resolveInterface, type NetInterface } from './interfaces.js';
import { ListenerIds, slotKey } from './listener-ids.js';
import { agentMetrics } from './metrics.js';
import { skbHandoff } from './proxy/handoff-skb.js';
import type { SkbKeeper } from './proxy/skb-keeper.js';
import { xdpHandoff } from './proxy/handoff-xdp.js';
import type { ListenerApplyResult, SpliceHooks } from './proxy/proxy.js';
import { compileDropRules, FirewallReconciler } from './reconcile-firewall.js';
import { reconcileMetrics, type ReconcileMetrics } from './reconcile-metrics.js';
import { needsSkb, SkbReconciler } from './reconcile-skb.js';
import { needsSteering, SteerReconciler, type SteerWant } from './reconcile-steer.js';
import { needsXdp, xdpEndpointAddresses, xdpInterfacesByListener, XdpReconciler } from './reconcile-xdp.js';

/** What serves the listeners in user space: the embedded proxy (absent in envoy mode). */
export interface ListenerServer {
  apply(state: DesiredState): Promise<ListenerApplyResult[]>;
}

export interface ReconcilerOptions {
  pins: PinLayout;
  nodeId: string;
  mode: ProxyMode;
  /** cgroup v2 directory of the proxy's sockets (the agent's, or Envoy's): SKB splice cleans up when they are released. */
  cgroup: string;
  probe: AttachProbe;
  logger: Logger;
  registry: Registry;
  /** Interface inventory and route lookups (tests may replace them). */
  inventory?: () => Promise<NetInterface[]>;
  egress?: (address: string) => Promise<string | undefined>;
  /** Largest number of listeners with an id (steer_socks capacity). */
  maxListeners?: number;
  /** Holds SKB-spliced pairs after their handover so they outlive the agent (skb-keeper.ts). */
  skbKeeper?: SkbKeeper;
}

export interface ListenerResult {
  name: string;
  ok: boolean;
  /** Names the listener, the reason and the remedy. */
  error?: string;
  /** When failed: whether its previous version still serves. */
  previousServes?: boolean;
}

export interface ReconcileReport {
  listeners: ListenerResult[];
  /** Things that work in a lesser way (drop rules in user space only, ...). */
  degraded: string[];
  /** Datapaths kept only because spliced pairs still go through them. */
  draining: string[];
}

export interface ReconcilerStatus {
  skb: boolean;
  steer: boolean;
  xdp: readonly string[];
  firewall: string[];
  failed: ListenerResult[];
  degraded: string[];
  draining: string[];
}

export class Reconciler {
  private readonly log: Logger;
  private readonly skb: SkbReconciler;
  private readonly steer: SteerReconciler;
  private readonly xdp: XdpReconciler;
  private readonly firewall: FirewallReconciler;
  private readonly ids: ListenerIds;
  private readonly metrics: ReconcileMetrics;
  private readonly lastGood = new Map<string, DesiredListener>();
  private server: ListenerServer | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private xdpAddresses = new Set<string>();
  private last: ReconcileReport = { listeners: [], degraded: [], draining: [] };
  private closed = false;

  constructor(private readonly o: ReconcilerOptions) {
    this.log = o.logger.child({ component: 'reconciler' });
    this.skb = new SkbReconciler({ pins: o.pins, cgroup: o.cgroup, logger: this.log });
    this.steer = new SteerReconciler({ pins: o.pins, logger: this.log });
    this.xdp = new XdpReconciler({ pins: o.pins, logger: this.log });
    this.firewall = new FirewallReconciler({ pins: o.pins, logger: this.log });
    this.ids = new ListenerIds(o.maxListeners ?? 1024);
    const onError = (what: string) => (e: Error) => this.log.error({ err: e.message }, `reading ${what} for metrics failed`);
    this.metrics = reconcileMetrics(o.registry, () => this.firewall.counts(), onError('the drop-rule counters'));
    agentMetrics(o.registry).setSplicedBytesSource(() => {
      const out: Array<{ path: 'skb' | 'xdp'; bytes: bigint }> = [];
      const s = this.skb.counters();
      if (s) out.push({ path: 'skb', bytes: s.redirected_bytes });
      const x = this.xdp.counters();
      if (x) out.push({ path: 'xdp', bytes: x.spliced_bytes });
      return out;
    }, onError('the splice counters'));
    registerXdpMetrics(o.registry, () => (this.xdp.maps ? { counters: () => this.xdp.counters()!, entries: () => this.xdp.entries() } : undefined), onError('the XDP splice counters'));
  }

  /**
   * The embedded proxy's hooks into the datapaths this reconciler owns. Without sk_lookup on
   * the node there is no `listening` hook, so the proxy binds every port itself.
   */
  spliceHooks(): SpliceHooks {
    const xdp = xdpHandoff({ maps: () => this.xdp.maps, ownerId: (l) => this.ids.get(l) ?? 0 });
    const hooks: SpliceHooks = {
      skb: skbHandoff({ maps: () => this.skb.maps, ...(this.o.skbKeeper ? { keeper: this.o.skbKeeper } : {}) }),
      xdp: (ctx) => {
        // XDP splice rewrites packets only on the interfaces it is attached to: both legs must
        // arrive there, or the stepped-out sockets' peers would talk to nobody.
        for (const [leg, sock] of [
          ['client', ctx.downstream],
          ['upstream', ctx.upstream],
        ] as const) {
          const addr = unmapped(sock.localAddress ?? '');
          if (!this.xdpAddresses.has(addr)) {
            return { taken: false, reason: `the ${leg} leg uses ${addr}, which is on no interface with XDP splice (${this.xdp.interfaces.join(', ') || 'none'})` };
          }
        }
        return xdp(ctx);
      },
    };
    if (this.o.probe.supported.includes('sk_lookup')) {
      hooks.listening = (name: string, server: Server) => this.steer.listening(name, serverFd(server));
      hooks.closed = (name: string) => this.steer.closed(name);
    }
    return hooks;
  }

  /** The embedded proxy that serves the listeners (embedded mode). */
  useServer(server: ListenerServer): void {
    this.server = server;
  }

  /**
   * Converges to `state`. `problems`: listeners the decoder could not read (their previous
   * version keeps serving). Serialised; resolves with a result per listener.
   */
  apply(state: DesiredState, problems: ReadonlyMap<string, string> = new Map()): Promise<ReconcileReport> {
    const run = this.queue.then(() => this.applyNow(state, problems));
    this.queue = run.catch(() => undefined);
    return run;
  }

  status(): ReconcilerStatus {
    return {
      skb: this.skb.attached,
      steer: this.steer.attached,
      xdp: this.xdp.interfaces,
      firewall: this.firewall.interfaces,
      failed: this.last.listeners.filter((l) => !l.ok),
      degraded: this.last.degraded,
      draining: this.last.draining,
    };
  }

  /** Agent exit: let go of every handle; everything stays attached and pinned for the next agent. */
  async release(): Promise<void> {
    this.closed = true;
    await this.queue;
    this.xdp.release();
    this.skb.release();
    this.steer.release();
    this.firewall.release();
  }

  /** Removes everything this agent attached and pinned (uninstall). */
  async detach(): Promise<void> {
    this.closed = true;
    await this.queue;
    this.firewall.detach();
    this.xdp.detach();
    this.steer.detach();
    this.skb.detach();
  }

  private async applyNow(state: DesiredState, problems: ReadonlyMap<string, string>): Promise<ReconcileReport> {
    if (this.closed) throw new Error('the reconciler is closed');
    const started = process.hrtime.bigint();
    const inventory = await (this.o.inventory ?? listInterfaces)();
    const clusters = new Map(state.clusters.map((c) => [c.name, c]));
    const degraded = new Set<string>();
    const draining = new Set<string>();

    const desired = new Map(state.listeners.map((l) => [l.name, l]));
    const failures = new Map<string, string>(problems);
    // Undecodable listeners keep their previous version.
    let candidates: DesiredListener[] = [...state.listeners];
    for (const name of problems.keys()) {
      const prev = this.lastGood.get(name);
      if (prev && !desired.has(name)) candidates.push(prev);
    }
    // What fails without touching the kernel (capabilities, interfaces) falls back to the
    // previous version before the pass: a pass without the listener would detach what it uses
    // (XDP splice, drop rules) only for the retry to attach it again, resetting counters.
    const early = this.check(candidates, inventory).failures;
    for (const [n, e] of early) if (!failures.has(n)) failures.set(n, e);
    candidates = candidates.flatMap((l) => {
      if (!early.has(l.name)) return [l];
      const prev = this.lastGood.get(l.name);
      return prev && prev !== l && !this.check([prev], inventory).failures.has(prev.name) ? [prev] : [];
    });
    let passFailures = await this.pass(candidates, clusters, state.clusters, inventory, degraded, draining);
    // An update that failed in the pass falls back to the previous version of that listener, once.
    const retry = candidates.some((l) => passFailures.has(l.name) && this.lastGood.has(l.name) && this.lastGood.get(l.name) !== l);
    for (const [n, e] of passFailures) if (!failures.has(n)) failures.set(n, e);
    if (retry) {
      candidates = candidates.flatMap((l) => {
        if (!passFailures.has(l.name)) return [l];
        const prev = this.lastGood.get(l.name);
        return prev && prev !== l ? [prev] : [];
      });
      passFailures = await this.pass(candidates, clusters, state.clusters, inventory, degraded, draining);
      for (const [n, e] of passFailures) if (!failures.has(n)) failures.set(n, e);
    }
    const servedPrevious = new Set(candidates.filter((l) => !passFailures.has(l.name) && desired.get(l.name) !== l).map((l) => l.name));

    const results: ListenerResult[] = [];
    for (const name of [...new Set([...desired.keys(), ...problems.keys()])].sort()) {
      const error = failures.get(name);
      if (error === undefined) {
        results.push({ name, ok: true });
        this.lastGood.set(name, desired.get(name)!);
      } else {
        results.push({ name, ok: false, error, previousServes: servedPrevious.has(name) });
      }
    }
    for (const name of [...this.lastGood.keys()]) if (!desired.has(name) && !problems.has(name)) this.lastGood.delete(name);

    this.metrics.listenerApplied.reset();
    for (const r of results) this.metrics.listenerApplied.set({ listener: r.name }, r.ok ? 1 : 0);
    this.metrics.attached.reset();
    if (this.skb.attached) this.metrics.attached.set({ datapath: 'skb', interface: '-' }, 1);
    if (this.steer.attached) this.metrics.attached.set({ datapath: 'steer', interface: '-' }, 1);
    for (const i of this.xdp.interfaces) this.metrics.attached.set({ datapath: 'xdp', interface: i }, 1);
    for (const i of this.firewall.interfaces) this.metrics.attached.set({ datapath: 'firewall', interface: i }, 1);
    const failed = results.filter((r) => !r.ok);
    this.metrics.runs.inc({ result: failed.length === 0 ? 'ok' : 'partial' });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.duration.observe(seconds);
    this.last = { listeners: results, degraded: [...degraded], draining: [...draining] };
    this.log.info(
      { listeners: results.length, failed: failed.map((f) => f.name), degraded: this.last.degraded, draining: this.last.draining, ms: Math.round(seconds * 1000), skb: this.skb.attached, steer: this.steer.attached, xdp: this.xdp.interfaces, firewall: this.firewall.interfaces },
      failed.length === 0 ? 'desired state applied' : 'desired state applied except for some listeners',
    );
    return this.last;
  }

  /**
   * 1. What this node can do, and the interfaces the listeners name: pure, nothing attached.
   * `degraded` collects what serves with less than asked.
   */
  private check(listeners: readonly DesiredListener[], inventory: readonly NetInterface[], degraded = new Set<string>()): { failures: Map<string, string>; chainIfaces: Map<string, string[]> } {
    const failures = new Map<string, string>();
    const fail = (l: string, e: string) => {
      if (!failures.has(l)) failures.set(l, e.startsWith(`listener "${l}"`) ? e : `listener "${l}": ${e}`);
    };
    const caps = new Set<string>(this.o.probe.supported);
    const why = (c: string) => this.o.probe.missing[c as keyof AttachProbe['missing']] ?? 'not supported here';
    const chainIfaces = new Map<string, string[]>();
    for (const l of listeners) {
      if (needsSkb(l)) {
        for (const c of ['sk_skb', 'cgroup_sock']) if (!caps.has(c)) fail(l.name, `SKB splice is not available on node ${this.o.nodeId}: ${c}: ${why(c)}`);
      }
      if (needsXdp(l)) {
        for (const c of ['xdp', 'tc']) if (!caps.has(c)) fail(l.name, `XDP splice is not available on node ${this.o.nodeId}: ${c}: ${why(c)}`);
        const names = new Set<string>();
        for (const c of l.chains) {
          if (c.mode !== 'xdp') continue;
          const ref = c.interface ?? l.interface;
          if (!ref) {
            fail(l.name, `filter chain "${c.name}" is in xdp mode but names no interface`);
            continue;
          }
          const r = resolveInterface(ref, inventory, this.o.nodeId);
          if ('error' in r) fail(l.name, `${r.error}; give the listener an interface that exists on this node, or a nodeSelector that leaves this node out`);
          else names.add(r.iface.name);
        }
        chainIfaces.set(l.name, [...names]);
      }
      if (needsSteering(l) && !caps.has('sk_lookup') && this.o.mode === 'envoy') {
        degraded.add(`listener "${l.name}": sk_lookup is not available on node ${this.o.nodeId} (${why('sk_lookup')}); Envoy receives only the ports it binds`);
      }
    }
    return { failures, chainIfaces };
  }

  /** One pass over the kernel datapaths and the proxy; returns the listeners that failed. */
  private async pass(
    listeners: readonly DesiredListener[],
    clusters: ReadonlyMap<string, DesiredCluster>,
    clusterList: readonly DesiredCluster[],
    inventory: readonly NetInterface[],
    degraded: Set<string>,
    draining: Set<string>,
  ): Promise<Map<string, string>> {
    const { failures, chainIfaces } = this.check(listeners, inventory, degraded);
    const fail = (l: string, e: string) => {
      if (!failures.has(l)) failures.set(l, e.startsWith(`listener "${l}"`) ? e : `listener "${l}": ${e}`);
    };
    const present = new Set(inventory.map((i) => i.name));
    const caps = new Set<string>(this.o.probe.supported);
    let ok = listeners.filter((l) => !failures.has(l.name));

    // 2. Ids (slots) that stay with each listener, taking over what an earlier agent left.
    this.steer.prepare(ok.some(needsSteering) && caps.has('sk_lookup'));
    const { ids, full } = this.ids.assign(
      ok.map((l) => ({ name: l.name, key: slotKey(l.address, l.ports[0]!.start) })),
      this.steer.recovered(),
    );
    for (const n of full) fail(n, `no free listener slot on node ${this.o.nodeId} (${this.ids.capacity} in use)`);
    ok = ok.filter((l) => !failures.has(l.name));

    // 3. XDP splice on the listeners' and their endpoints' interfaces. The firewall gives up the
    // XDP slot of interfaces XDP splice takes first.
    const xdpListeners = ok.filter(needsXdp);
    const egress = new Map<string, string | undefined>();
    for (const l of xdpListeners) {
      for (const a of xdpEndpointAddresses(l, clusters)) if (!egress.has(a)) egress.set(a, await (this.o.egress ?? egressInterface)(a));
    }
    const byListener = xdpInterfacesByListener(xdpListeners, clusters, chainIfaces, egress);
    const wantedXdp = [...new Set([...byListener.values()].flat())];
    const fwBefore = compileDropRules(ok, inventory, new Set([...wantedXdp, ...this.xdp.interfaces]));
    this.firewall.ensure(fwBefore.rules, present);
    const xr = this.xdp.ensure(wantedXdp, present);
    for (const [l, ifs] of byListener) {
      for (const i of ifs) {
        const e = xr.failed.get(i);
        if (e) fail(l, e);
      }
    }
    for (const i of xr.draining) draining.add(`xdp:${i}`);
    const xdpSet = new Set(this.xdp.interfaces);
    this.xdpAddresses = new Set(inventory.filter((i) => xdpSet.has(i.name)).flatMap((i) => i.addresses.map((a) => a.slice(0, a.lastIndexOf('/')))));
    ok = ok.filter((l) => !failures.has(l.name));

    // 4. SKB splice, while a listener has an skb chain (or pairs still drain through it).
    const skbListeners = ok.filter(needsSkb);
    const sr = this.skb.ensure(skbListeners.length > 0);
    if (sr.error) {
      if (skbListeners.length > 0) for (const l of skbListeners) fail(l.name, sr.error);
      else degraded.add(sr.error);
    }
    if (sr.draining) draining.add(`skb:${sr.draining} pairs`);
    ok = ok.filter((l) => !failures.has(l.name));

    // 5. sk_lookup steering of extra ports and ranges.
    if (caps.has('sk_lookup')) {
      const steered = ok.filter(needsSteering);
      const prepError = this.steer.prepare(steered.length > 0);
      if (prepError) for (const l of steered) fail(l.name, prepError);
      const wants: SteerWant[] = steered.filter((l) => !failures.has(l.name)).map((l) => ({ name: l.name, slot: ids.get(l.name)!, address: l.address, ports: l.ports }));
      for (const [n, e] of this.steer.ensure(wants)) fail(n, e);
      ok = ok.filter((l) => !failures.has(l.name));
    }

    // 6. XDP drop rules on the interfaces XDP splice does not hold.
    const fw = compileDropRules(ok, inventory, xdpSet);
    for (const [, reason] of fw.userspaceOnly) degraded.add(reason);
    for (const [, e] of this.firewall.ensure(fw.rules, present)) degraded.add(e);

    // 7. The proxy serves what the kernel side accepted.
    if (this.server) {
      const results = await this.server.apply({ listeners: ok, clusters: [...clusterList] });
      for (const r of results) if (!r.ok) fail(r.name, r.error ?? 'the proxy could not serve it');
    }
    return failures;
  }
}

/** The fd of a listening net.Server (for the sk_lookup SOCKMAP). */
function serverFd(server: Server): number {
  const fd = (server as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the listening socket has no fd (closed meanwhile?)');
  return fd;
}

/** ::ffff:a.b.c.d → a.b.c.d */
function unmapped(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}
