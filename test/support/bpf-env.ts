// Kernel state of BPF tests that outlives a process: pins under TEST_PIN_BASE and cgroups named
// TEST_CGROUP_PREFIX*. Each test makes its own unique root and cgroup and removes them in
// afterAll; global-setup sweeps leftovers before the suite and fails the run if any remain after.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount, makeCgroup, removeCgroup } from '../../src/agent/bpf/cgroup.js';
import { listPins, PinLayout, removePinTree } from '../../src/agent/bpf/pins.js';

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
  const tag = `${label}-${randomBytes(3).toString('hex')}`;
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

/** Pins and test cgroups left behind (by crashed runs, or tests that did not clean up). */
export function leftoverBpfTestState(): { pins: string[]; cgroups: string[] } {
  const pins = listPins(TEST_PIN_BASE);
  const dirs = existsSync(TEST_PIN_BASE) ? readdirSync(TEST_PIN_BASE).map((d) => join(TEST_PIN_BASE, d)) : [];
  let cgroups: string[] = [];
  try {
    const mount = cgroup2Mount();
    cgroups = readdirSync(mount)
      .filter((d) => d.startsWith(TEST_CGROUP_PREFIX))
      .map((d) => join(mount, d));
  } catch {
    /* no cgroup2: nothing of ours can be there */
  }
  return { pins: pins.length > 0 ? pins : dirs, cgroups };
}

export function sweepBpfTestState(): { pins: string[]; cgroups: string[] } {
  const left = leftoverBpfTestState();
  if (existsSync(TEST_PIN_BASE)) removePinTree(TEST_PIN_BASE);
  for (const c of left.cgroups) removeCgroup(c);
  return left;
}
