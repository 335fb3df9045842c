// Listener and drop rule port specs: single ports (4444) and inclusive ranges ("5000-5010").
export interface PortRange {
  /** First port, inclusive. */
  start: number;
  /** Last port, inclusive. */
  end: number;
}

export type PortSpec = number | string;

export function parsePortSpec(spec: PortSpec): { range: PortRange } | { error: string } {
  if (typeof spec === 'number') {
    if (!Number.isInteger(spec) || spec < 1 || spec > 65535) return { error: `port ${spec} is not between 1 and 65535` };
    return { range: { start: spec, end: spec } };
  }
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(spec.trim());
  if (!m) return { error: `"${spec}" is not a port or a range like "5000-5010"` };
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (start < 1 || end > 65535) return { error: `range "${spec}" must stay within 1-65535` };
  if (start > end) return { error: `range "${spec}" ends before it starts; write "${end}-${start}"` };
  return { range: { start, end } };
}

export function rangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.start <= b.end && b.start <= a.end;
}

export function formatRange(r: PortRange): string {
  return r.start === r.end ? String(r.start) : `${r.start}-${r.end}`;
}
