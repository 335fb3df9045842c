#!/usr/bin/env node
// Installs whatever a fresh Debian 12 checkout is missing before `npm start`, `npm test`,
// `npm run bench*` or `npm run build:bpf`: apt packages, npm dependencies, the BPF objects and
// a bpffs mount. Uses only Node built-ins, because it runs before node_modules exists.
// Every step says what it does; a step with nothing to do stays quiet.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const purpose = (() => {
  const i = process.argv.indexOf('--for');
  return i > 0 ? (process.argv[i + 1] ?? 'all') : 'all';
})();

const say = (msg) => process.stderr.write(`[setup] ${msg}\n`);
const fail = (msg) => {
  process.stderr.write(`[setup] error: ${msg}\n`);
  process.exit(1);
};

// Each apt package is named with a probe that tells whether it is already present.
const kernelTools = [
  { pkg: 'make', probe: () => hasCommand('make') },
  { pkg: 'clang', probe: () => hasCommand('clang') },
  { pkg: 'llvm', probe: () => hasCommand('llvm-strip') },
  { pkg: 'libbpf-dev', probe: () => existsSync('/usr/include/bpf/bpf_helpers.h') },
  { pkg: 'bpftool', probe: () => hasCommand('bpftool') },
  { pkg: 'iproute2', probe: () => hasCommand('ip') && hasCommand('tc') },
  { pkg: 'ethtool', probe: () => hasCommand('ethtool') },
  { pkg: 'util-linux', probe: () => hasCommand('nsenter') },
  { pkg: 'openssl', probe: () => hasCommand('openssl') },
];
const benchTools = [
  { pkg: 'haproxy', probe: () => hasCommand('haproxy') },
  { pkg: 'linux-perf', probe: () => hasCommand('perf') },
];
const aptWanted = {
  start: kernelTools,
  test: kernelTools,
  'build:bpf': kernelTools,
  bench: [...kernelTools, ...benchTools],
  all: [...kernelTools, ...benchTools],
}[purpose];
if (!aptWanted) fail(`unknown purpose "${purpose}" (use start, test, bench, build:bpf or all)`);

function hasCommand(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

function ensureApt() {
  const missing = aptWanted.filter((t) => !t.probe()).map((t) => t.pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    fail(`missing system packages: ${missing.join(' ')}. Run as root, or: sudo apt-get install -y ${missing.join(' ')}`);
  }
  say(`installing system packages with apt: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
}

function ensureNpm() {
  const lock = join(root, 'package-lock.json');
  const installed = join(root, 'node_modules', '.package-lock.json');
  const pkg = join(root, 'package.json');
  const stale =
    !existsSync(installed) ||
    statSync(installed).mtimeMs < statSync(pkg).mtimeMs ||
    (existsSync(lock) && statSync(installed).mtimeMs < statSync(lock).mtimeMs);
  if (!stale) return;
  say('installing npm dependencies (npm ci; better-sqlite3 and koffi may compile, about 2 minutes)');
  run('npm', existsSync(lock) ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund']);
}

function ensureBpffs() {
  const mounts = readFileSync('/proc/mounts', 'utf8');
  if (/^\S+ \/sys\/fs\/bpf bpf /m.test(mounts)) return;
  if (process.getuid?.() !== 0) fail('bpffs is not mounted at /sys/fs/bpf and we are not root to mount it');
  say('mounting bpffs at /sys/fs/bpf');
  run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}

function buildBpf() {
  if (!existsSync(join(root, 'bpf', 'Makefile'))) return;
  // make is quiet when the objects are current; it prints what it compiles otherwise.
  const r = spawnSync('make', ['-s', '-C', join(root, 'bpf')], { stdio: 'inherit' });
  if (r.status !== 0) fail('building the BPF objects failed (see the compiler output above)');
}

ensureApt();
ensureNpm();
if (purpose !== 'build:bpf') ensureBpffs();
buildBpf();
