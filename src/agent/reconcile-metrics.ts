// The reconciler's Prometheus metrics: reconcile runs and their duration, which listeners are
// applied, which datapaths are attached where, and drops per rule read from the firewall's
// per-CPU counters at scrape time.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RuleCounts } from './reconcile-firewall.js';

export interface ReconcileMetrics {
  runs: Counter<'result'>;
  duration: Histogram;
  listenerApplied: Gauge<'listener'>;
  attached: Gauge<'datapath' | 'interface'>;
}

export function reconcileMetrics(registry: Registry, dropSource: () => RuleCounts[], onError: (e: Error) => void): ReconcileMetrics {
  const registers = [registry];
  const read = (): RuleCounts[] | undefined => {
    try {
      return dropSource();
    } catch (e) {
      onError(e as Error);
      return undefined;
    }
  };
  new Counter<'interface' | 'rule'>({
    name: 'exds_drop_packets_total',
    help: 'Packets dropped at XDP by a drop rule (per-CPU BPF counters summed at scrape time)',
    labelNames: ['interface', 'rule'],
    registers,
    collect() {
      this.reset();
      for (const c of read() ?? []) this.inc({ interface: c.interface, rule: c.rule }, Number(c.packets));
    },
  });
  new Counter<'interface' | 'rule'>({
    name: 'exds_drop_bytes_total',
    help: 'Bytes dropped at XDP by a drop rule (per-CPU BPF counters summed at scrape time)',
    labelNames: ['interface', 'rule'],
    registers,
    collect() {
      this.reset();
      for (const c of read() ?? []) this.inc({ interface: c.interface, rule: c.rule }, Number(c.bytes));
    },
  });
  return {
    runs: new Counter({ name: 'exds_reconcile_runs_total', help: 'Reconcile runs by result (ok: every listener applied; partial: some failed)', labelNames: ['result'], registers }),
    duration: new Histogram({ name: 'exds_reconcile_duration_seconds', help: 'Time to apply a desired state (kernel and proxy)', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers }),
    listenerApplied: new Gauge({ name: 'exds_listener_applied', help: 'Whether the listener is applied as desired (1) or failed (0; its previous version may still serve)', labelNames: ['listener'], registers }),
    attached: new Gauge({ name: 'exds_datapath_attached', help: 'Datapaths attached by the agent (skb, steer: interface "-"; xdp, firewall: per interface)', labelNames: ['datapath', 'interface'], registers }),
  };
}
