// Runs once around the whole suite: removes namespaces a crashed earlier run left behind, and
// afterwards fails the run if any test left one of ours (tests must clean up even on failure).
import { leftoverNetns, sweepLeftoverNetns } from './netns.js';

export async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const swept = await sweepLeftoverNetns();
  if (swept.length > 0) process.stderr.write(`[global-setup] removed namespaces left by an earlier run: ${swept.join(', ')}\n`);
}

export async function teardown(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const left = await leftoverNetns();
  if (left.length > 0) {
    await sweepLeftoverNetns();
    throw new Error(`tests left network namespaces behind: ${left.join(', ')}`);
  }
}
