// Pure earliest-deadline-first scheduler, the weighted picking behind round_robin and weighted
// least_request (as Envoy does it, source/common/upstream/edf_scheduler.h explains the idea):
// an entry of weight w is due every 1/w; the entry with the earliest deadline is picked and
// scheduled again. Ties go to the entry scheduled first, so equal weights rotate in order.

interface Slot<T> {
  item: T;
  deadline: number;
  seq: number;
}

export class EdfScheduler<T> {
  private heap: Slot<T>[] = [];
  private now = 0;
  private seq = 0;

  /** Schedules `item` with `weight` (> 0) relative to the current time. */
  add(item: T, weight: number): void {
    if (!(weight > 0)) throw new Error(`EDF weight must be positive, got ${weight}`);
    this.push({ item, deadline: this.now + 1 / weight, seq: this.seq++ });
  }

  get size(): number {
    return this.heap.length;
  }

  /** Picks the entry that is due first and schedules it again with weightOf(item). */
  pickAndReschedule(weightOf: (item: T) => number): T | undefined {
    const top = this.pop();
    if (!top) return undefined;
    this.now = top.deadline;
    this.add(top.item, weightOf(top.item));
    return top.item;
  }

  /** The entry that pickAndReschedule would return, without changing anything. */
  peek(): T | undefined {
    return this.heap[0]?.item;
  }

  private less(a: Slot<T>, b: Slot<T>): boolean {
    return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
  }

  private push(s: Slot<T>): void {
    const h = this.heap;
    h.push(s);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Slot<T> | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
