// Validation of a whole config document: the schema first, then the semantic rules a schema cannot
// express. It reports every problem at once, each with the JSON path of the value to fix.
import { dropRuleName, normalizeConfig } from './config.js';
import { parseDuration } from './duration.js';
import { listenAddressesOverlap, parseCidr, parseIp, type ParsedIp } from './ip.js';
import { selectorsMayOverlap } from './node-selector.js';
import { formatRange, parsePortSpec, rangesOverlap, type PortRange } from './ports.js';
import { decodeRawResource, type DecodedRawResource } from './raw-resources.js';
import { schemaProblems, type Problem } from './schema-errors.js';
import { ConfigDocument as ConfigDocumentSchema, type ConfigDocument, type ConfigDocumentInput, type Listener } from './schema.js';
import { ResourceType, shortType } from './type-urls.js';

export type { Problem };

export interface ValidConfig {
  config: ConfigDocument;
  /** Raw resources decoded against the Envoy protos, in document order. */
  raw: DecodedRawResource[];
}

export type ValidationResult = ({ ok: true } & ValidConfig) | { ok: false; problems: Problem[] };

/** Validates a document as parsed from YAML/JSON. Nothing is thrown for bad input. */
export function validateConfig(input: unknown): ValidationResult {
  const structural = schemaProblems(ConfigDocumentSchema, input);
  if (structural.length > 0) return { ok: false, problems: structural };
  const config = normalizeConfig(input as ConfigDocumentInput);
  const problems: Problem[] = [];
  const raw = checkSemantics(config, problems);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, config, raw };
}

/** Like validateConfig, but throws a ConfigInvalidError; for documents that were valid when stored. */
export function mustValidate(input: unknown): ValidConfig {
  const r = validateConfig(input);
  if (!r.ok) throw new ConfigInvalidError(r.problems);
  return r;
}

export class ConfigInvalidError extends Error {
  constructor(readonly problems: Problem[]) {
    super(
      `invalid config: ${problems
        .slice(0, 5)
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`,
    );
    this.name = 'ConfigInvalidError';
  }
}

function list(names: Iterable<string>): string {
  const all = [...names];
  if (all.length === 0) return 'none defined';
  const shown = all.slice(0, 10).join(', ');
  return all.length > 10 ? `defined: ${shown}, …` : `defined: ${shown}`;
}

function checkDuration(text: string | undefined, path: string, problems: Problem[], opts: { positive?: boolean } = {}): bigint | undefined {
  if (text === undefined) return undefined;
  const d = parseDuration(text);
  if ('error' in d) {
    problems.push({ path, message: d.error });
    return undefined;
  }
  if (opts.positive && d.ns === 0n) problems.push({ path, message: `must be longer than 0 (got "${text}")` });
  return d.ns;
}

interface PlacedListener {
  index: number;
  listener: Listener;
  ip: ParsedIp;
  ranges: { range: PortRange; path: string }[];
}

function checkSemantics(config: ConfigDocument, problems: Problem[]): DecodedRawResource[] {
  const clusterNames = new Set(config.clusters.map((c) => c.name));
  const listenerNames = new Map<string, number>();
  const placed: PlacedListener[] = [];
  config.listeners.forEach((l, i) => {
    const path = `$.listeners[${i}]`;
    const first = listenerNames.get(l.name);
    if (first !== undefined) problems.push({ path: `${path}.name`, message: `listener "${l.name}" is defined twice (first at $.listeners[${first}])` });
    else listenerNames.set(l.name, i);

    const ip = parseIp(l.address);
    if (!ip) problems.push({ path: `${path}.address`, message: `"${l.address}" is not an IPv4 or IPv6 address (use 0.0.0.0 or :: for every address)` });

    const ranges: PlacedListener['ranges'] = [];
    if (l.port !== undefined && l.ports !== undefined) problems.push({ path, message: 'give either "port" or "ports", not both' });
    else if (l.port === undefined && l.ports === undefined) problems.push({ path: `${path}.port`, message: 'missing the port: give "port" (e.g. 4444) or "ports" (e.g. [4444, "5000-5010"])' });
    else if (l.port !== undefined) ranges.push({ range: { start: l.port, end: l.port }, path: `${path}.port` });
    else {
      (l.ports ?? []).forEach((spec, k) => {
        const ppath = `${path}.ports[${k}]`;
        const p = parsePortSpec(spec);
        if ('error' in p) return problems.push({ path: ppath, message: p.error });
        const clash = ranges.find((r) => rangesOverlap(r.range, p.range));
        if (clash) problems.push({ path: ppath, message: `ports ${formatRange(p.range)} overlap ${formatRange(clash.range)} at ${clash.path}` });
        else ranges.push({ range: p.range, path: ppath });
      });
    }
    if (ip) placed.push({ index: i, listener: l, ip, ranges });

    const routes = l.routes ?? [];
    const usesXdp = l.mode === 'xdp' || routes.some((r) => r.mode === 'xdp');
    if (usesXdp && l.interface === undefined) {
      const where = l.mode === 'xdp' ? `${path}.interface` : `${path}.routes[${routes.findIndex((r) => r.mode === 'xdp')}].mode`;
      problems.push({ path: where, message: `mode "xdp" needs an interface: add interface: <name> (e.g. eth1) or an ifindex to listener "${l.name}"` });
    }
    if (!usesXdp && l.interface !== undefined) {
      problems.push({ path: `${path}.interface`, message: `interface is only used in mode "xdp"; remove it or set mode: xdp (listener "${l.name}" is mode "${l.mode}")` });
    }

    const routed = new Map<string, string>();
    routes.forEach((r, k) => {
      const rpath = `${path}.routes[${k}]`;
      if (!clusterNames.has(r.cluster)) problems.push({ path: `${rpath}.cluster`, message: `unknown cluster "${r.cluster}" (${list(clusterNames.keys())})` });
      r.serverNames.forEach((sn, s) => {
        const key = sn.toLowerCase().replace(/\.$/, '');
        const prev = routed.get(key);
        if (prev) problems.push({ path: `${rpath}.serverNames[${s}]`, message: `server name "${sn}" is already routed by ${prev}; Envoy refuses two filter chains with the same match` });
        else routed.set(key, `${rpath}.serverNames[${s}]`);
      });
    });
    if (l.cluster !== undefined && !clusterNames.has(l.cluster)) problems.push({ path: `${path}.cluster`, message: `unknown cluster "${l.cluster}" (${list(clusterNames.keys())})` });
    if (l.cluster === undefined && routes.length === 0) {
      problems.push({ path: `${path}.cluster`, message: `listener "${l.name}" has no routes and no cluster, so it could not forward anything: add cluster: <name> or routes` });
    }
    checkDuration(l.idleTimeout, `${path}.idleTimeout`, problems);
  });

  // Two listeners whose addresses overlap must not share a port unless no node gets both.
  for (let a = 0; a < placed.length; a++) {
    for (let b = a + 1; b < placed.length; b++) {
      const pa = placed[a] as PlacedListener;
      const pb = placed[b] as PlacedListener;
      if (!listenAddressesOverlap(pa.ip, pb.ip)) continue;
      if (!selectorsMayOverlap(pa.listener.nodeSelector, pb.listener.nodeSelector)) continue;
      for (const rb of pb.ranges) {
        const ra = pa.ranges.find((r) => rangesOverlap(r.range, rb.range));
        if (ra) {
          problems.push({
            path: rb.path,
            message: `port ${formatRange(rb.range)} on ${pb.listener.address} clashes with listener "${pa.listener.name}" (${pa.listener.address}, ${ra.path}); use other ports, or nodeSelectors that no node matches both of`,
          });
        }
      }
    }
  }

  const clusterFirst = new Map<string, number>();
  config.clusters.forEach((c, i) => {
    const path = `$.clusters[${i}]`;
    const first = clusterFirst.get(c.name);
    if (first !== undefined) problems.push({ path: `${path}.name`, message: `cluster "${c.name}" is defined twice (first at $.clusters[${first}])` });
    else clusterFirst.set(c.name, i);
    checkDuration(c.connectTimeout, `${path}.connectTimeout`, problems, { positive: true });
    if (c.healthCheck) {
      const interval = checkDuration(c.healthCheck.interval, `${path}.healthCheck.interval`, problems, { positive: true });
      const timeout = checkDuration(c.healthCheck.timeout, `${path}.healthCheck.timeout`, problems, { positive: true });
      if (interval !== undefined && timeout !== undefined && timeout > interval) {
        problems.push({ path: `${path}.healthCheck.timeout`, message: `timeout "${c.healthCheck.timeout}" is longer than interval "${c.healthCheck.interval}"; a check would still run when the next starts` });
      }
    }
    const seen = new Map<string, number>();
    let weightSum = 0;
    (c.endpoints ?? []).forEach((e, j) => {
      const epath = `${path}.endpoints[${j}]`;
      const ip = parseIp(e.address);
      if (!ip) problems.push({ path: `${epath}.address`, message: `"${e.address}" is not an IPv4 or IPv6 address (endpoints are addresses; DNS names are not resolved)` });
      const key = `${ip ? ip.bytes.join('.') : e.address}|${e.port}`;
      const dup = seen.get(key);
      if (dup !== undefined) problems.push({ path: epath, message: `endpoint ${e.address}:${e.port} is listed twice (first at ${path}.endpoints[${dup}])` });
      else seen.set(key, j);
      weightSum += e.weight ?? 1;
    });
    if (weightSum > 4294967295) problems.push({ path: `${path}.endpoints`, message: `the endpoint weights add up to ${weightSum}, more than Envoy's limit of 4294967295 per locality` });
  });

  const dropNames = new Map<string, number>();
  config.dropRules.forEach((r, i) => {
    const path = `$.dropRules[${i}]`;
    const name = dropRuleName(r);
    const first = dropNames.get(name);
    if (first !== undefined) problems.push({ path: r.name ? `${path}.name` : `${path}.cidr`, message: `drop rule "${name}" is defined twice (first at $.dropRules[${first}]); give the rules distinct names` });
    else dropNames.set(name, i);
    const c = parseCidr(r.cidr);
    if ('error' in c) problems.push({ path: `${path}.cidr`, message: c.error });
    (r.ports ?? []).forEach((spec, k) => {
      const p = parsePortSpec(spec);
      if ('error' in p) problems.push({ path: `${path}.ports[${k}]`, message: p.error });
    });
    (r.listeners ?? []).forEach((ln, k) => {
      if (!listenerNames.has(ln)) problems.push({ path: `${path}.listeners[${k}]`, message: `unknown listener "${ln}" (${list(listenerNames.keys())})` });
    });
  });

  const generated = new Map<string, string>();
  config.listeners.forEach((l, i) => generated.set(`${ResourceType.Listener}|${l.name}`, `$.listeners[${i}]`));
  config.clusters.forEach((c, i) => {
    generated.set(`${ResourceType.Cluster}|${c.name}`, `$.clusters[${i}]`);
    generated.set(`${ResourceType.ClusterLoadAssignment}|${c.name}`, `$.clusters[${i}]`);
  });
  const raw: DecodedRawResource[] = [];
  const rawSeen = new Map<string, number>();
  config.resources.forEach((res, i) => {
    const path = `$.resources[${i}]`;
    const d = decodeRawResource(res, path);
    if ('problems' in d) return problems.push(...d.problems);
    const key = `${d.resource.typeUrl}|${d.resource.name}`;
    const gen = generated.get(key);
    if (gen) problems.push({ path, message: `${shortType(d.resource.typeUrl)} "${d.resource.name}" is also generated from ${gen}; rename one of them` });
    const dup = rawSeen.get(key);
    if (dup !== undefined) problems.push({ path, message: `${shortType(d.resource.typeUrl)} "${d.resource.name}" is defined twice (first at $.resources[${dup}])` });
    else rawSeen.set(key, i);
    raw.push(d.resource);
  });
  return raw;
}
