// Kernel state of BPF tests that outlives a process: pins under TEST_PIN_BASE and cgroups named
// TEST_CGROUP_PREFIX*. Each test makes its own unique root and cgroup, named with the test run's
// id (see netns.ts), and removes them in afterAll. global-setup sweeps what runs that are gone
// left behind, and fails a run that leaves any of its own.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount, makeCgroup, removeCgroup } from '../../src/agent/bpf/cgroup.js';
import { PinLayout, removePinTree } from '../../src/agent/bpf/pins.js';
import { testRunId } from './netns.js';

export const TEST_PIN_BASE = '/sys/fs/bpf/ebpf-xds-test';
export const TEST_CGROUP_PREFIX = 'ebpf-xds-test-';

export interface BpfTestEnv {
  tag: string;
  pins: PinLayout;
  /** A fresh cgroup v2 directory (under the cgroup2 mount, never the root cgroup itself). */
  cgroup: string;
  cleanup(): void;
}

export function bpfTestEnv(label: string): BpfTestEnv {
  const tag = `${testRunId()}-${label}-${randomBytes(3).toString('hex')}`;
  const pins = new PinLayout(join(TEST_PIN_BASE, tag));
  const cgroup = makeCgroup(cgroup2Mount(), `${TEST_CGROUP_PREFIX}${tag}`);
  let done = false;
  return {
    tag,
    pins,
    cgroup,
    cleanup() {
      if (done) return;
      done = true;
      const errors: string[] = [];
      try {
        removePinTree(pins.root);
      } catch (e) {
        errors.push((e as Error).message);
      }
      try {
        removeCgroup(cgroup);
      } catch (e) {
        errors.push((e as Error).message);
      }
      if (errors.length > 0) throw new Error(`BPF test cleanup of ${tag} failed: ${errors.join('; ')}`);
    },
  };
}

// netns.ts records the owner PID of each run id here; a run whose owner is gone is over.
const OWNERS_DIR = '/run/ebpf-xds-test/owners';
const RUN_ID = /^[0-9a-f]{6}$/;

function runAlive(runId: string): boolean {
  try {
    process.kill(Number(readFileSync(`${OWNERS_DIR}/${runId}`, 'utf8')), 0);
    return true;
  } catch {
    return false;
  }
}

/** Test pin roots and cgroups, with the run id their name starts with. */
function testState(): Array<{ kind: 'pins' | 'cgroup'; path: string; runId: string }> {
  const out: Array<{ kind: 'pins' | 'cgroup'; path: string; runId: string }> = [];
  if (existsSync(TEST_PIN_BASE)) {
    for (const d of readdirSync(TEST_PIN_BASE)) out.push({ kind: 'pins', path: join(TEST_PIN_BASE, d), runId: d.split('-')[0] ?? '' });
  }
  try {
    const mount = cgroup2Mount();
    for (const d of readdirSync(mount)) {
      if (d.startsWith(TEST_CGROUP_PREFIX)) out.push({ kind: 'cgroup', path: join(mount, d), runId: d.slice(TEST_CGROUP_PREFIX.length).split('-')[0] ?? '' });
    }
  } catch {
    /* no cgroup2: nothing of ours can be there */
  }
  return out;
}

/**
 * Pins and cgroups of BPF tests left behind: of this run (`run`), or of runs that are over
 * (`orphans`). State of other live runs (a concurrent run) is never touched.
 */
export function leftoverBpfTestState(which: 'run' | 'orphans'): string[] {
  const me = process.env['EXDS_RUN_ID'];
  return testState()
    .filter((s) => RUN_ID.test(s.runId)) // names without a run id are not ours to judge
    .filter((s) => (which === 'run' ? s.runId === me : s.runId !== me && !runAlive(s.runId)))
    .map((s) => s.path);
}

export function sweepBpfTestState(which: 'run' | 'orphans'): string[] {
  const left = leftoverBpfTestState(which);
  for (const path of left) {
    if (path.startsWith(TEST_PIN_BASE)) removePinTree(path);
    else removeCgroup(path);
  }
  return left;
}
