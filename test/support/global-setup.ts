// Runs once around the whole suite. Setup claims a run id (inherited by the test workers through
// EXDS_RUN_ID) and removes namespaces whose owning run is gone (crashed earlier runs); runs that
// are alive, e.g. a developer's concurrent run, are left alone; BPF test pins and cgroups
// (bpf-env.ts) likewise. Teardown fails the run if any test of this run left a namespace, a pin
// or a cgroup behind: tests must clean up even when they fail.
import { leftoverBpfTestState, sweepBpfTestState } from './bpf-env.js';
import { leftoverNetns, releaseTestRunId, sweepLeftoverNetns, testRunId } from './netns.js';

export async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  testRunId();
  const swept = await sweepLeftoverNetns('orphans');
  if (swept.length > 0) process.stderr.write(`[global-setup] removed namespaces left by an earlier run: ${swept.join(', ')}\n`);
  const bpf = sweepBpfTestState('orphans');
  if (bpf.length > 0) process.stderr.write(`[global-setup] removed BPF pins and cgroups left by an earlier run: ${bpf.join(', ')}\n`);
}

export async function teardown(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const left = await leftoverNetns('run');
  await sweepLeftoverNetns('run');
  const bpf = leftoverBpfTestState('run');
  sweepBpfTestState('run');
  releaseTestRunId();
  const problems: string[] = [];
  if (left.length > 0) problems.push(`network namespaces: ${left.join(', ')}`);
  if (bpf.length > 0) problems.push(`BPF pins or cgroups: ${bpf.join(', ')}`);
  if (problems.length > 0) throw new Error(`tests left kernel state behind: ${problems.join('; ')}`);
}
