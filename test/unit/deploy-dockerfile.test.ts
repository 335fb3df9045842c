// The Dockerfile, checked without a Docker engine: parsed with dockerfile-ast and validated with
// dockerfile-utils (the parser and checks behind the VS Code Docker extension), then checked for
// the structure the image needs: two stages, BPF objects built in the first, every COPY source
// present in the repository and not dropped by .dockerignore, every file the runtime stage takes
// from the build stage produced there, and nothing the runtime imports left out by the prune of
// devDependencies.
import { builtinModules } from 'node:module';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import dockerignoreModule, { type Ignore } from '@balena/dockerignore';
import { DockerfileParser, type Copy, type Instruction, type JSONInstruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/deploy-kubectl.js';

// A CommonJS module whose typings declare an ES default export: under NodeNext the default import
// is module.exports, the factory itself.
const dockerignore = dockerignoreModule as unknown as (options?: { ignorecase?: boolean }) => Ignore;

const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const dockerfile = DockerfileParser.parse(text);
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  type: string;
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface Stage {
  name: string;
  image: string;
  instructions: Instruction[];
}

/** ARG defaults declared before the first FROM, substituted into FROM lines as Docker does. */
function resolveArgs(value: string): string {
  const args = new Map(
    dockerfile.getInitialARGs().map((a) => [a.getProperty()?.getName() ?? '', a.getProperty()?.getValue() ?? ''] as const),
  );
  return value.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const v = args.get((a ?? b)!);
    if (v === undefined) throw new Error(`Dockerfile: FROM uses undeclared ARG ${a ?? b}`);
    return v;
  });
}

function stages(): Stage[] {
  const out: Stage[] = [];
  for (const ins of dockerfile.getInstructions()) {
    if (ins.getKeyword() === 'FROM') {
      const from = dockerfile.getFROMs().find((f) => f.getRange().start.line === ins.getRange().start.line)!;
      out.push({ name: from.getBuildStage() ?? '', image: resolveArgs(from.getImage() ?? ''), instructions: [] });
    } else out[out.length - 1]?.instructions.push(ins);
  }
  return out;
}

function runs(stage: Stage): string[] {
  return stage.instructions.filter((i) => i.getKeyword() === 'RUN').map((i) => i.getArguments().map((a) => a.getValue()).join(' '));
}

function copies(stage: Stage): Array<{ from: string | null; sources: string[]; dest: string }> {
  return stage.instructions
    .filter((i) => i.getKeyword() === 'COPY')
    .map((i) => {
      const args = (i as Copy).getArguments().map((a) => a.getValue());
      return { from: (i as Copy).getFromFlag()?.getValue() ?? null, sources: args.slice(0, -1), dest: args[args.length - 1]! };
    });
}

function workdir(stage: Stage): string {
  const w = stage.instructions.filter((i) => i.getKeyword() === 'WORKDIR');
  expect(w, `stage ${stage.name} WORKDIR`).toHaveLength(1);
  return w[0]!.getArguments()[0]!.getValue();
}

/** apt packages installed by the stage's RUN lines. */
function aptPackages(stage: Stage): string[] {
  return runs(stage).flatMap((r) => [...r.matchAll(/apt-get install (?:-\S+ )*((?:[a-z0-9][a-z0-9.+-]* ?)+)/g)].flatMap((m) => m[1]!.trim().split(' ')));
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('Dockerfile', () => {
  it('has no errors or warnings from dockerfile-utils', () => {
    expect(validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('is flagged by dockerfile-utils when broken (the check can fail)', () => {
    const broken = text.replace('COPY tsconfig.json ./', 'COPY tsconfig.json').replace('FROM node:${NODE_MAJOR}-bookworm AS build', 'FROM node:${NODE_MAJOR}-bookworm AS build stage');
    expect(validate(broken).length).toBeGreaterThanOrEqual(2);
  });

  it('has a Debian 12 build stage and a slim runtime stage', () => {
    const s = stages();
    expect(s.map((x) => [x.name, x.image])).toEqual([
      ['build', 'node:20-bookworm'],
      ['runtime', 'node:20-bookworm-slim'],
    ]);
    // The image's Node satisfies package.json "engines" (">=20.19": the node:20 images track 20.x).
    const minMajor = Number(/>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
    expect(Number(/^node:(\d+)-/.exec(s[0]!.image)?.[1])).toBeGreaterThanOrEqual(minMajor);
  });

  it('builds the BPF objects and the npm dependencies in the build stage, then drops devDependencies', () => {
    const [build] = stages();
    expect(aptPackages(build!)).toEqual(expect.arrayContaining(['clang', 'llvm', 'libbpf-dev', 'bpftool', 'make']));
    const run = runs(build!).join('\n');
    expect(run).toMatch(/\bnpm ci\b/);
    expect(run).toMatch(/\bmake (?:-s )?-C bpf\b/);
    expect(run).toMatch(/\bnpm prune --omit=dev\b/);
    expect(existsSync(join(REPO_ROOT, 'bpf', 'Makefile'))).toBe(true);
    // npm ci needs the lock file in place first, and make needs the sources.
    const order = build!.instructions.map((i) => `${i.getKeyword()} ${i.getArguments().map((a) => a.getValue()).join(' ')}`);
    const idx = (re: RegExp) => order.findIndex((l) => re.test(l));
    expect(idx(/^COPY .*package-lock\.json/)).toBeLessThan(idx(/^RUN npm ci/));
    expect(idx(/^COPY bpf /)).toBeLessThan(idx(/^RUN make/));
  });

  it('copies from the build context only files that exist and that .dockerignore keeps', () => {
    const ig = dockerignore({ ignorecase: false }).add(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));
    const fromContext = stages().flatMap((s) => copies(s).filter((c) => c.from === null));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const { sources } of fromContext) {
      for (const src of sources) {
        const p = join(REPO_ROOT, src);
        expect(existsSync(p), `COPY source ${src}`).toBe(true);
        expect(ig.ignores(src), `COPY source ${src} is excluded by .dockerignore`).toBe(false);
        if (statSync(p).isDirectory()) {
          const kept = filesUnder(p).filter((f) => !ig.ignores(relative(REPO_ROOT, f)));
          expect(kept.length, `files kept under ${src}`).toBeGreaterThan(0);
        }
      }
    }
    // Host build outputs never reach the image: they are rebuilt inside it.
    for (const out of ['node_modules', 'bpf/.output', 'bpf/.output/vmlinux.h', 'bpf/vmlinux.h', '.git', 'data']) {
      expect(ig.ignores(out), out).toBe(true);
    }
  });

  it('takes from the build stage only what the build stage put there', () => {
    const [build, runtime] = stages();
    const root = workdir(build!);
    const copiedIn = copies(build!).flatMap((c) =>
      c.sources.map((s) => (c.dest.endsWith('/') || c.sources.length > 1 ? posix.join(root, c.dest, posix.basename(s)) : posix.join(root, c.dest))),
    );
    // What RUN lines produce, and the command that produces it.
    const made: Record<string, RegExp> = { [`${root}/node_modules`]: /\bnpm ci\b/, [`${root}/bpf/.output`]: /\bmake (?:-s )?-C bpf\b/ };
    const makefile = readFileSync(join(REPO_ROOT, 'bpf', 'Makefile'), 'utf8');
    expect(makefile).toMatch(/^OUTPUT\s*:=\s*\.output\s*$/m);
    for (const c of copies(runtime!).filter((x) => x.from !== null)) {
      expect(c.from).toBe('build');
      for (const src of c.sources) {
        const producer = Object.entries(made).find(([p]) => src === p || src.startsWith(`${p}/`));
        if (producer) expect(runs(build!).join('\n'), src).toMatch(producer[1]);
        else expect(copiedIn, src).toContain(src);
      }
    }
  });

  it('runs as non-root by default with an entrypoint that exists, under tini', () => {
    const [, runtime] = stages();
    expect(aptPackages(runtime!)).toEqual(expect.arrayContaining(['libbpf1', 'iproute2', 'tini']));
    const user = runtime!.instructions.filter((i) => i.getKeyword() === 'USER').map((i) => i.getArguments()[0]!.getValue());
    expect(user).toEqual(['node']);
    const entry = runtime!.instructions.find((i) => i.getKeyword() === 'ENTRYPOINT') as JSONInstruction;
    const argv = entry.getJSONStrings().map((s) => s.getJSONValue());
    expect(argv).toEqual(['/usr/bin/tini', '--', 'node', '/app/bin/ebpf-xds.mjs']);
    const root = workdir(runtime!);
    const script = relative(root, argv[3]!);
    expect(existsSync(join(REPO_ROOT, script)), script).toBe(true);
    expect(copies(runtime!).some((c) => c.sources.includes(`${workdir(stages()[0]!)}/bin`) && posix.join(root, c.dest) === `${root}/bin`)).toBe(true);
    expect(pkg.type).toBe('module'); // the .ts sources are ESM; package.json is copied for that
    // The control plane's --data-dir in Compose is a named volume, seeded with the image's owner.
    expect(runs(runtime!).join('\n')).toContain('mkdir -p /var/lib/ebpf-xds && chown node:node /var/lib/ebpf-xds');
  });

  it('keeps every package that bin/ and src/ import among the production dependencies', () => {
    const builtins = new Set(builtinModules);
    const missing: string[] = [];
    for (const file of [...filesUnder(join(REPO_ROOT, 'src')), ...filesUnder(join(REPO_ROOT, 'bin'))]) {
      if (!/\.(ts|mts|js|mjs)$/.test(file)) continue;
      const code = readFileSync(file, 'utf8');
      const specs = [
        ...code.matchAll(/^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm),
        ...code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
      ].map((m) => m[1]!);
      for (const spec of specs) {
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!(name in pkg.dependencies)) missing.push(`${relative(REPO_ROOT, file)} imports ${spec}${name in pkg.devDependencies ? ' (a devDependency: pruned from the image)' : ''}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
