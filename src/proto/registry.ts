// Owns the protobuf type registry: Envoy's v3 API protos, loaded from the copy that ships in
// @grpc/grpc-js-xds (deps/), plus our own protos in proto/. Loaded once per process, on first use.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** Directories searched for imports, in order. */
function includeDirs(): string[] {
  const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));
  const ours = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto');
  return [
    ours,
    join(xdsDeps, 'envoy-api'),
    join(xdsDeps, 'xds'),
    join(xdsDeps, 'googleapis'),
    join(xdsDeps, 'protoc-gen-validate'),
    protobufjsDir,
  ];
}

function walkProtos(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walkProtos(p));
    else if (entry.name.endsWith('.proto')) out.push(p);
  }
  return out;
}

// protobufjs bundles these google/protobuf files itself; they need no file on disk.
const BUNDLED = new Set(Object.keys((protobuf as unknown as { common: Record<string, unknown> }).common));

class ProtoFiles {
  private readonly known = new Map<string, string | null>();
  private readonly closed = new Map<string, boolean>();
  constructor(private readonly dirs: string[]) {}

  find(target: string): string | null {
    if (this.known.has(target)) return this.known.get(target) ?? null;
    let found: string | null = null;
    for (const d of this.dirs) {
      const p = join(d, target);
      if (existsSync(p)) {
        found = p;
        break;
      }
    }
    this.known.set(target, found);
    return found;
  }

  /** True when the file and everything it imports exist. The deps/ copy is a subset of the API. */
  loadable(rel: string): boolean {
    const cached = this.closed.get(rel);
    if (cached !== undefined) return cached;
    this.closed.set(rel, true); // cycles are fine; assume true while descending
    let ok: boolean;
    if (BUNDLED.has(rel) && !this.find(rel)) ok = true;
    else {
      const path = this.find(rel);
      ok = path !== null && [...readFileSync(path, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)"/gm)].every((m) => this.loadable(m[1] as string));
    }
    this.closed.set(rel, ok);
    return ok;
  }
}

export interface ProtoRegistry {
  readonly root: protobuf.Root;
  /** Looks up a message type by full name; throws with a clear message when it is unknown. */
  type(fullName: string): protobuf.Type;
  /** Like type(), but by type URL (`type.googleapis.com/<name>`); undefined when unknown. */
  typeForUrl(typeUrl: string): protobuf.Type | undefined;
}

let registry: ProtoRegistry | undefined;

/** The process-wide registry. The first call parses about 400 .proto files (~0.3 s). */
export function protoRegistry(): ProtoRegistry {
  registry ??= loadRegistry();
  return registry;
}

function loadRegistry(): ProtoRegistry {
  const dirs = includeDirs();
  const files = new ProtoFiles(dirs);
  const [ours, envoyApi, xdsDir] = dirs as [string, string, string];
  const candidates = [
    ...walkProtos(join(envoyApi, 'envoy')).map((f) => relative(envoyApi, f)),
    ...walkProtos(join(xdsDir, 'xds')).map((f) => relative(xdsDir, f)),
    ...walkProtos(ours).map((f) => relative(ours, f)),
  ];
  const loadable = candidates.filter((f) => files.loadable(f));
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => files.find(target) ?? target;
  root.loadSync(loadable, { keepCase: true });
  root.resolveAll();

  const byUrl = new Map<string, protobuf.Type | null>();
  return {
    root,
    type(fullName) {
      const t = root.lookup(fullName.replace(/^\./, ''));
      if (!(t instanceof protobuf.Type)) throw new Error(`unknown protobuf message type "${fullName}"`);
      return t;
    },
    typeForUrl(typeUrl) {
      let t = byUrl.get(typeUrl);
      if (t === undefined) {
        const slash = typeUrl.lastIndexOf('/');
        const name = slash >= 0 ? typeUrl.slice(slash + 1) : '';
        const found = name ? root.lookup(name) : null;
        t = found instanceof protobuf.Type ? found : null;
        byUrl.set(typeUrl, t);
      }
      return t ?? undefined;
    },
  };
}

/** `type.googleapis.com/<full name>` for a message type name. */
export function typeUrlFor(fullName: string): string {
  return TYPE_URL_PREFIX + fullName.replace(/^\./, '');
}

/** Full message name from a type URL, e.g. envoy.config.listener.v3.Listener. */
export function typeNameFromUrl(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}
