// Small numeric ids for listeners, as the BPF maps need them: the sk_lookup slot of a listener
// (steer_socks index) and the owner id of XDP splice entries. Ids
// stay with a listener while it exists, and a restarted agent takes over the slots an earlier one
// left in the pinned maps (a patched Envoy keeps its sockets in them). Pure.

/** The key a slot is recovered by: the listener's address and the port it binds. */
export function slotKey(address: string, port: number): string {
  return `${address}|${port}`;
}

export class ListenerIds {
  private readonly byName = new Map<string, number>();

  constructor(readonly capacity: number) {}

  /**
   * Gives every listener an id: the one it has, else the one recovered for its key (if free),
   * else the lowest free one. Listeners not in the list lose theirs. Returns the ids, and the
   * listeners that found none free.
   */
  assign(listeners: ReadonlyArray<{ name: string; key: string }>, recovered: ReadonlyMap<string, number> = new Map()): { ids: Map<string, number>; full: string[] } {
    const want = new Set(listeners.map((l) => l.name));
    for (const n of [...this.byName.keys()]) if (!want.has(n)) this.byName.delete(n);
    const used = new Set(this.byName.values());
    const full: string[] = [];
    // Recovered slots first, so a new listener cannot take the slot of a recovered one.
    for (const l of listeners) {
      if (this.byName.has(l.name)) continue;
      const r = recovered.get(l.key);
      if (r !== undefined && !used.has(r) && r < this.capacity) {
        this.byName.set(l.name, r);
        used.add(r);
      }
    }
    let next = 0;
    for (const l of listeners) {
      if (this.byName.has(l.name)) continue;
      while (used.has(next)) next++;
      if (next >= this.capacity) {
        full.push(l.name);
        continue;
      }
      this.byName.set(l.name, next);
      used.add(next);
    }
    return { ids: new Map(this.byName), full };
  }

  get(name: string): number | undefined {
    return this.byName.get(name);
  }
}
