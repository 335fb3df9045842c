// Human durations of the config model ("250ms", "5s", "1m30s") and their proto3 JSON form
// (google.protobuf.Duration is a string of seconds with up to nine decimals, e.g. "0.250s").
const UNIT_NS: Record<string, bigint> = { ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n };

/** The pattern the schema enforces: one or more <integer><unit> parts, largest unit first. */
export const DURATION_PATTERN = '^([0-9]+(ns|us|ms|s|m|h))+$';
const PART = /([0-9]+)(ns|us|ms|s|m|h)/g;
const WHOLE = new RegExp(DURATION_PATTERN);

/** Largest duration a google.protobuf.Duration accepts (Envoy validates seconds <= 315,576,000,000). */
const MAX_NS = 315_576_000_000n * 1_000_000_000n;

/** Nanoseconds of a model duration, or an error message saying why it is not one. */
export function parseDuration(text: string): { ns: bigint } | { error: string } {
  if (!WHOLE.test(text)) return { error: `"${text}" is not a duration; write e.g. "250ms", "5s", "1m" or "1m30s"` };
  let ns = 0n;
  for (const m of text.matchAll(PART)) ns += BigInt(m[1] as string) * (UNIT_NS[m[2] as string] as bigint);
  if (ns > MAX_NS) return { error: `"${text}" is longer than the 10,000 years a protobuf Duration can hold` };
  return { ns };
}

/** Milliseconds of a duration the schema already accepted (throws otherwise: a programming error). */
export function durationMs(text: string): number {
  const d = parseDuration(text);
  if ('error' in d) throw new Error(d.error);
  return Number(d.ns) / 1e6;
}

/** proto3 JSON Duration ("0.250s") for a model duration. */
export function durationToProtoJson(text: string): string {
  const d = parseDuration(text);
  if ('error' in d) throw new Error(d.error);
  const secs = d.ns / 1_000_000_000n;
  const frac = d.ns % 1_000_000_000n;
  if (frac === 0n) return `${secs}s`;
  return `${secs}.${frac.toString().padStart(9, '0').replace(/0+$/, '')}s`;
}
