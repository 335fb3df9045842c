// Connection ids for logs (the `conn` field on every line of a connection) and hooks: short,
// unique within the process and unlikely to repeat across agent restarts.
import { randomBytes } from 'node:crypto';

const prefix = randomBytes(3).toString('hex');
let counter = 0;

/** e.g. "3fa9c1-1z": a per-process random prefix and a base-36 sequence number. */
export function nextConnId(): string {
  counter++;
  return `${prefix}-${counter.toString(36)}`;
}
