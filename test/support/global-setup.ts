// Runs once around the whole suite. Setup claims a run id (inherited by the test workers through
// EXDS_RUN_ID) and removes namespaces whose owning run is gone (crashed earlier runs); runs that
// are alive, e.g. a developer's concurrent run, are left alone. Teardown fails the run if any test
// of this run left a namespace behind: tests must clean up even when they fail.
import { leftoverNetns, releaseTestRunId, sweepLeftoverNetns, testRunId } from './netns.js';

export async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  testRunId();
  const swept = await sweepLeftoverNetns('orphans');
  if (swept.length > 0) process.stderr.write(`[global-setup] removed namespaces left by an earlier run: ${swept.join(', ')}\n`);
}

export async function teardown(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const left = await leftoverNetns('run');
  await sweepLeftoverNetns('run');
  releaseTestRunId();
  if (left.length > 0) throw new Error(`tests left network namespaces behind: ${left.join(', ')}`);
}
