// Config validation: the schema and every semantic rule, each reported with the path to fix, all
// problems of a document at once.
import { describe, expect, it } from 'vitest';
import { parseConfigText, configToYaml } from '../../src/model/config-text.js';
import { validateConfig, type Problem } from '../../src/model/validate.js';
import { durationToProtoJson, parseDuration } from '../../src/model/duration.js';
import { formatIp, parseCidr, parseIp } from '../../src/model/ip.js';

const cluster = (name: string, extra: Record<string, unknown> = {}) => ({ name, endpoints: [{ address: '10.0.0.2', port: 9000 }], ...extra });
const listener = (name: string, extra: Record<string, unknown> = {}) => ({ name, address: '0.0.0.0', port: 4444, mode: 'skb', cluster: 'c1', ...extra });

function problems(doc: unknown): Problem[] {
  const r = validateConfig(doc);
  return r.ok ? [] : r.problems;
}

function expectProblem(doc: unknown, path: string, fragment: string | RegExp) {
  const ps = problems(doc);
  const hit = ps.find((p) => p.path === path && (typeof fragment === 'string' ? p.message.includes(fragment) : fragment.test(p.message)));
  expect(hit, `expected a problem at ${path} matching ${String(fragment)}; got ${JSON.stringify(ps, null, 1)}`).toBeDefined();
}

describe('schema problems', () => {
  it('accepts the DESIGN.md example and an empty document', () => {
    const text = `
listeners:
  - name: kafka
    address: 0.0.0.0
    port: 4444
    mode: xdp
    interface: eth1
    routes:
      - serverNames: [kafka1.server.test]
        cluster: kafka1
    cluster: fallback
clusters:
  - name: kafka1
    lbPolicy: round_robin
    connectTimeout: 250ms
    healthCheck: { interval: 5s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 2 }
    endpoints: [{ address: 10.10.1.3, port: 9092, weight: 1 }]
  - name: fallback
    endpoints: [{ address: "fd00::3", port: 9092 }]
dropRules:
  - { cidr: 192.168.3.0/24, listeners: [kafka] }
`;
    const parsed = parseConfigText(text);
    expect(parsed.ok).toBe(true);
    expect(problems(parsed.ok ? parsed.value : null)).toEqual([]);
    expect(problems({})).toEqual([]);
  });

  it('names wrong types, unknown fields, missing fields and bad enums with paths', () => {
    const ps = problems({ listeners: [{ name: 7, address: '0.0.0.0', port: '4444', mode: 'turbo', clster: 'x' }], foo: 1 });
    const byPath = Object.fromEntries(ps.map((p) => [p.path, p.message]));
    expect(byPath['$.foo']).toMatch(/unknown field "foo" \(allowed: listeners, clusters, dropRules, resources\)/);
    expect(byPath['$.listeners[0].name']).toMatch(/expected a string, got number 7/);
    expect(byPath['$.listeners[0].port']).toMatch(/expected an integer, got the string "4444"/);
    expect(byPath['$.listeners[0].mode']).toMatch(/expected one of "xdp", "skb", "userspace", got the string "turbo"/);
    expect(byPath['$.listeners[0].clster']).toMatch(/unknown field "clster"/);
  });

  it('explains union fields (ports, interface) in one message', () => {
    const ps = problems({ listeners: [listener('a', { port: undefined, ports: [0, 'abc'] })], clusters: [cluster('c1')] });
    expect(ps.filter((p) => p.path === '$.listeners[0].ports[0]')).toHaveLength(1);
    expectProblem({ listeners: [listener('a', { port: undefined, ports: [0] })], clusters: [cluster('c1')] }, '$.listeners[0].ports[0]', 'a TCP port (1-65535) or an inclusive range');
    expectProblem({ listeners: [listener('a', { mode: 'xdp', interface: 'a very long interface name' })], clusters: [cluster('c1')] }, '$.listeners[0].interface', 'network interface by name');
  });

  it('rejects bad durations', () => {
    expectProblem({ clusters: [cluster('c1', { connectTimeout: '5 seconds' })] }, '$.clusters[0].connectTimeout', 'a duration such as');
    expectProblem({ clusters: [cluster('c1', { connectTimeout: '0s' })] }, '$.clusters[0].connectTimeout', 'longer than 0');
  });
});

describe('semantic problems', () => {
  it('unknown cluster references, with the defined ones listed', () => {
    expectProblem({ listeners: [listener('a', { cluster: 'nope' })], clusters: [cluster('c1')] }, '$.listeners[0].cluster', 'unknown cluster "nope" (defined: c1)');
    expectProblem({ listeners: [listener('a', { routes: [{ serverNames: ['x.test'], cluster: 'zz' }] })], clusters: [cluster('c1')] }, '$.listeners[0].routes[0].cluster', 'unknown cluster "zz"');
  });

  it('duplicate names of listeners, clusters, drop rules and raw resources', () => {
    expectProblem({ listeners: [listener('a'), listener('a', { port: 5555 })], clusters: [cluster('c1')] }, '$.listeners[1].name', 'defined twice');
    expectProblem({ clusters: [cluster('c1'), cluster('c1')] }, '$.clusters[1].name', 'defined twice');
    expectProblem({ dropRules: [{ cidr: '10.0.0.0/8' }, { cidr: '10.0.0.0/8', ports: [22] }] }, '$.dropRules[1].cidr', 'give the rules distinct names');
    const raw = { '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r' };
    expectProblem({ resources: [raw, raw] }, '$.resources[1]', 'defined twice');
  });

  it('two listeners on one address:port, and wildcard overlap per family', () => {
    expectProblem({ listeners: [listener('a'), listener('b')], clusters: [cluster('c1')] }, '$.listeners[1].port', 'clashes with listener "a"');
    expectProblem({ listeners: [listener('a'), listener('b', { address: '10.1.1.1' })], clusters: [cluster('c1')] }, '$.listeners[1].port', 'clashes');
    expectProblem({ listeners: [listener('a', { address: '::' }), listener('b', { address: 'fd00::1' })], clusters: [cluster('c1')] }, '$.listeners[1].port', 'clashes');
    // Different families, different specific addresses, or disjoint node selectors: no clash.
    expect(problems({ listeners: [listener('a'), listener('b', { address: '::' })], clusters: [cluster('c1')] })).toEqual([]);
    expect(problems({ listeners: [listener('a', { address: '10.0.0.1' }), listener('b', { address: '10.0.0.2' })], clusters: [cluster('c1')] })).toEqual([]);
    expect(
      problems({
        listeners: [listener('a', { nodeSelector: { clusters: ['edge'] } }), listener('b', { nodeSelector: { clusters: ['core'] } })],
        clusters: [cluster('c1')],
      }),
    ).toEqual([]);
  });

  it('overlapping port ranges within and across listeners', () => {
    expectProblem({ listeners: [listener('a', { port: undefined, ports: [4444, '4440-4450'] })], clusters: [cluster('c1')] }, '$.listeners[0].ports[1]', 'overlap 4444');
    expectProblem(
      { listeners: [listener('a', { port: undefined, ports: ['5000-5010'] }), listener('b', { port: undefined, ports: ['5010-5020'] })], clusters: [cluster('c1')] },
      '$.listeners[1].ports[0]',
      'port 5010-5020 on 0.0.0.0 clashes with listener "a"',
    );
    expectProblem({ listeners: [listener('a', { port: undefined, ports: ['5010-5000'] })], clusters: [cluster('c1')] }, '$.listeners[0].ports[0]', 'write "5000-5010"');
    expectProblem({ listeners: [listener('a', { ports: [1] })], clusters: [cluster('c1')] }, '$.listeners[0]', 'either "port" or "ports"');
    expectProblem({ listeners: [listener('a', { port: undefined })], clusters: [cluster('c1')] }, '$.listeners[0].port', 'missing the port');
  });

  it('bad CIDRs, with a suggestion for host bits', () => {
    expectProblem({ dropRules: [{ cidr: '10.1.2.3/8' }] }, '$.dropRules[0].cidr', 'did you mean 10.0.0.0/8?');
    expectProblem({ dropRules: [{ cidr: 'fd00::1/129' }] }, '$.dropRules[0].cidr', 'between /0 and /128');
    expectProblem({ dropRules: [{ cidr: 'banana/3' }] }, '$.dropRules[0].cidr', 'not an IPv4 or IPv6 address');
    expect(problems({ dropRules: [{ cidr: '2001:db8::/32' }, { cidr: '192.168.3.7' }] })).toEqual([]);
  });

  it('xdp mode needs an interface; interface needs xdp', () => {
    expectProblem({ listeners: [listener('a', { mode: 'xdp' })], clusters: [cluster('c1')] }, '$.listeners[0].interface', 'mode "xdp" needs an interface');
    expectProblem(
      { listeners: [listener('a', { routes: [{ serverNames: ['a.test'], cluster: 'c1', mode: 'xdp' }] })], clusters: [cluster('c1')] },
      '$.listeners[0].routes[0].mode',
      'needs an interface',
    );
    expectProblem({ listeners: [listener('a', { interface: 'eth0' })], clusters: [cluster('c1')] }, '$.listeners[0].interface', 'only used in mode "xdp"');
  });

  it('endpoints: addresses, duplicates and weights', () => {
    expectProblem({ clusters: [cluster('c1', { endpoints: [{ address: 'kafka.local', port: 1 }] })] }, '$.clusters[0].endpoints[0].address', 'not an IPv4 or IPv6');
    expectProblem({ clusters: [cluster('c1', { endpoints: [{ address: 'fd00::1', port: 1 }, { address: 'fd00:0::1', port: 1 }] })] }, '$.clusters[0].endpoints[1]', 'listed twice');
    expectProblem({ clusters: [cluster('c1', { endpoints: [{ address: '10.0.0.1', port: 1, weight: 0 }] })] }, '$.clusters[0].endpoints[0].weight', 'must be >= 1');
    expectProblem(
      { clusters: [cluster('c1', { endpoints: [{ address: '10.0.0.1', port: 1, weight: 4294967295 }, { address: '10.0.0.2', port: 1, weight: 4294967295 }] })] },
      '$.clusters[0].endpoints',
      'add up to',
    );
  });

  it('listener without routes or cluster, duplicate SNI, unknown drop rule listener, health check timing', () => {
    expectProblem({ listeners: [listener('a', { cluster: undefined })] }, '$.listeners[0].cluster', 'no routes and no cluster');
    expectProblem(
      { listeners: [listener('a', { routes: [{ serverNames: ['A.test'], cluster: 'c1' }, { serverNames: ['a.test.'], cluster: 'c1' }] })], clusters: [cluster('c1')] },
      '$.listeners[0].routes[1].serverNames[0]',
      'already routed',
    );
    expectProblem({ dropRules: [{ cidr: '10.0.0.0/8', listeners: ['ghost'] }] }, '$.dropRules[0].listeners[0]', 'unknown listener "ghost"');
    expectProblem({ clusters: [cluster('c1', { healthCheck: { interval: '1s', timeout: '2s' } })] }, '$.clusters[0].healthCheck.timeout', 'longer than interval');
  });

  it('raw resources are decoded strictly and may not shadow generated ones', () => {
    expectProblem({ resources: [{ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'x', conect_timeout: '1s' }] }, '$.resources[0].conect_timeout', 'unknown field');
    expectProblem({ resources: [{ '@type': 'type.googleapis.com/nope.Nope', name: 'x' }] }, '$.resources[0]["@type"]', 'unknown type');
    expectProblem({ resources: [{ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster' }] }, '$.resources[0].name', 'needs a non-empty "name"');
    expectProblem({ clusters: [cluster('c1')], resources: [{ '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', cluster_name: 'c1' }] }, '$.resources[0]', 'also generated from $.clusters[0]');
    expectProblem({ resources: [{ name: 'x' }] }, '$.resources[0]["@type"]', 'missing required field "@type"');
  });

  it('reports every problem of a document at once', () => {
    const ps = problems({
      listeners: [listener('a', { cluster: 'x' }), listener('b', { mode: 'xdp', port: 1 })],
      clusters: [cluster('c1', { connectTimeout: '0ms' })],
      dropRules: [{ cidr: '1.2.3.4/40' }],
    });
    expect(ps.map((p) => p.path).sort()).toEqual(['$.clusters[0].connectTimeout', '$.dropRules[0].cidr', '$.listeners[0].cluster', '$.listeners[1].interface']);
  });
});

describe('parsing and helpers', () => {
  it('YAML errors name the line and column; duplicate keys are refused', () => {
    const bad = parseConfigText('listeners:\n  - name: a\n    name: b\n');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.problems[0]?.message).toMatch(/line 3, column 5/);
    const garbage = parseConfigText('listeners: [\n  {name: a,,\n');
    expect(garbage.ok).toBe(false);
    const ipv6 = parseConfigText('listeners:\n  - address: ::\n');
    expect(!ipv6.ok && ipv6.problems[0]?.message).toMatch(/quote IPv6 addresses, e.g. address: "::"/);
    const json = parseConfigText('{"listeners": [', 'json');
    expect(json.ok).toBe(false);
  });

  it('exported YAML parses back to the same document (IPv6 and port ranges included)', () => {
    const doc = {
      listeners: [listener('a', { address: '::', port: undefined, ports: [4444, '5000-5010'] })],
      clusters: [cluster('c1', { endpoints: [{ address: '::1', port: 1 }] })],
      dropRules: [{ cidr: '::/0', ports: ['1-1024'] }],
      resources: [{ '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r', '@nodeSelector': { ids: ['n1'] } }],
    };
    const clean = JSON.parse(JSON.stringify(doc)) as unknown;
    const v = validateConfig(clean);
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    const back = parseConfigText(configToYaml(v.config, 'ebpf-xds config'));
    expect(back.ok && back.value).toEqual(v.config);
  });

  it('durations and addresses', () => {
    expect(durationToProtoJson('250ms')).toBe('0.25s');
    expect(durationToProtoJson('1m30s')).toBe('90s');
    expect(durationToProtoJson('1500us')).toBe('0.0015s');
    expect(parseDuration('5')).toHaveProperty('error');
    const c = parseCidr('2001:DB8:0:0::/64');
    expect('cidr' in c && formatIp(c.cidr.ip)).toBe('2001:db8::');
    expect(formatIp(parseIp('::ffff:10.0.0.1')!)).toBe('::ffff:a00:1');
    expect(formatIp(parseIp('1:0:0:1:0:0:0:1')!)).toBe('1:0:0:1::1');
  });
});
