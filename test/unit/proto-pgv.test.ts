// protoc-gen-validate evaluation (src/proto/pgv.ts): every rule the loaded Envoy protos use is
// implemented, the rules behave as PGV defines them (checked on small purpose-built types), and
// real Envoy messages get the violations Envoy would refuse them for.
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { encodeJson } from '../../src/proto/json.js';
import { pgvProblems, pgvProblemsInBytes, pgvProblemsOf, PgvUnsupportedRuleError, unsupportedPgvRules } from '../../src/proto/pgv.js';

function typeOf(body: string): protobuf.Type {
  const root = new protobuf.Root();
  for (const file of ['google/protobuf/duration.proto', 'google/protobuf/timestamp.proto', 'google/protobuf/wrappers.proto', 'google/protobuf/any.proto']) {
    root.addJSON((protobuf.common.get(file) as { nested: Record<string, protobuf.AnyNestedObject> }).nested);
  }
  protobuf.parse(`syntax = "proto3"; package t; ${body}`, root, { keepCase: true });
  root.resolveAll();
  return root.lookupType('t.T');
}
const check = (t: protobuf.Type, json: Record<string, unknown>) => pgvProblemsOf(t, json).map((p) => `${p.path}: ${p.message}`);

describe('protoc-gen-validate rules', () => {
  it('implements every rule the loaded Envoy protos use', () => {
    expect(unsupportedPgvRules()).toEqual([]);
  });

  it('strings: lengths in characters and bytes, affixes, sets, patterns and well-known formats', () => {
    const t = typeOf(`message T {
      string a = 1 [(validate.rules).string = {min_len: 2, max_bytes: 4}];
      string b = 2 [(validate.rules).string = {prefix: "x-", not_contains: "!", in: ["x-1", "x-2"]}];
      string c = 3 [(validate.rules).string = {pattern: "^[a-z]+$", ignore_empty: true}];
      string d = 4 [(validate.rules).string = {email: true}];
      string e = 5 [(validate.rules).string = {hostname: true}];
      string f = 6 [(validate.rules).string = {address: true}];
      string g = 7 [(validate.rules).string = {uri: true}];
      string h = 8 [(validate.rules).string = {uuid: true}];
      string i = 9 [(validate.rules).string = {well_known_regex: HTTP_HEADER_NAME}];
      string j = 10 [(validate.rules).string = {well_known_regex: HTTP_HEADER_VALUE, strict: false}];
    }`);
    const good = { a: 'éé', b: 'x-1', c: '', d: 'ops@example.com', e: 'a-b.example', f: '2001:db8::1', g: 'https://x/y', h: '123e4567-e89b-12d3-a456-426614174000', i: ':authority', j: 'a\tb' };
    expect(check(t, good)).toEqual([]);
    expect(check(t, { ...good, a: 'ééé', b: 'x-1!', c: 'A', d: 'no-at', e: '-bad', f: 'a..b', g: '/relative', h: 'nope', i: 'sp ace', j: 'a\nb' })).toEqual([
      '$.a: at most 4 bytes allowed',
      '$.b: must be one of "x-1", "x-2"',
      '$.b: must not contain "!"',
      '$.c: must match ^[a-z]+$',
      '$.d: must be an email address',
      '$.e: must be a hostname',
      '$.f: must be an IP address or a hostname',
      '$.g: must be an absolute URI',
      '$.h: must be a UUID',
      '$.i: must be a valid HTTP_HEADER_NAME',
      '$.j: must be a valid HTTP_HEADER_VALUE',
    ]);
    // proto3 scalars are checked at their default value when unset, as PGV does.
    expect(check(t, { ...good, a: undefined })).toEqual(['$.a: at least 2 characters required']);
  });

  it('numbers: bounds, exclusive ranges, 64-bit values beyond 2^53, sets and wrappers', () => {
    const t = typeOf(`message T {
      uint32 port = 1 [(validate.rules).uint32 = {gte: 1, lte: 65535}];
      uint64 outside = 2 [(validate.rules).uint64 = {lt: 10, gt: 20}];
      int64 big = 3 [(validate.rules).int64 = {gt: 9007199254740992}];
      double ratio = 4 [(validate.rules).double = {gt: 0, lte: 1}];
      google.protobuf.UInt32Value w = 5 [(validate.rules).uint32 = {in: [1, 2]}];
      bool on = 6 [(validate.rules).bool = {const: true}];
    }`);
    expect(check(t, { port: 80, outside: '5', big: '9007199254740993', ratio: 0.5, on: true })).toEqual([]);
    expect(check(t, { port: 70000, outside: '15', big: '9007199254740992', ratio: 0, w: 3, on: false })).toEqual([
      '$.port: must be at most 65535',
      '$.outside: must be less than 10 or greater than 20',
      '$.big: must be greater than 9007199254740992',
      '$.ratio: must be greater than 0',
      '$.w: must be one of 1, 2',
      '$.on: must be true',
    ]);
  });

  it('messages, oneofs, repeated fields, maps, enums, durations and timestamps', () => {
    const t = typeOf(`
    enum Color { RED = 0; BLUE = 1; }
    message Inner { string name = 1 [(validate.rules).string.min_len = 1]; }
    message T {
      Inner must = 1 [(validate.rules).message.required = true];
      repeated Inner list = 2 [(validate.rules).repeated = {min_items: 1, max_items: 2, unique: true}];
      repeated string tags = 3 [(validate.rules).repeated.items.string.min_len = 2];
      map<string, Inner> by = 4 [(validate.rules).map = {max_pairs: 1, keys: {string: {min_len: 2}}}];
      Color color = 5 [(validate.rules).enum.defined_only = true];
      google.protobuf.Duration d = 6 [(validate.rules).duration = {required: true, gt: {}, lte: {seconds: 5}}];
      google.protobuf.Timestamp ts = 7 [(validate.rules).timestamp = {lt_now: true}];
      oneof pick { option (validate.required) = true; string a = 8; string b = 9 [(validate.rules).string.min_len = 3]; }
    }`);
    expect(check(t, { must: { name: 'x' }, list: [{ name: 'a' }], tags: ['ab'], by: { kk: { name: 'v' } }, color: 'BLUE', d: '1.5s', ts: '2020-01-01T00:00:00Z', a: '' })).toEqual([]);
    expect(check(t, { list: [{ name: 'a' }, { name: 'a' }, { name: '' }], tags: ['a'], by: { k: { name: '' }, kk: { name: 'v' } }, color: 7, d: '5.000000001s', ts: '2999-01-01T00:00:00Z' })).toEqual([
      '$: one of a, b is required',
      '$.must: value is required',
      '$.list: at most 2 items allowed',
      '$.list: items must be unique',
      '$.list[2].name: at least 1 characters required',
      '$.tags[0]: at least 2 characters required',
      '$.by: at most 1 entries allowed',
      '$.by["k"]: at least 2 characters required',
      '$.by["k"].name: at least 1 characters required',
      '$.color: 7 is not a defined Color value',
      '$.d: must be at most 5s',
      '$.ts: must be in the past',
    ]);
    // An unset oneof member is not validated; a set one is.
    expect(check(t, { must: { name: 'x' }, list: [{ name: 'a' }], d: '1s', b: 'xy' })).toEqual(['$.b: at least 3 characters required']);
    expect(check(t, { must: { name: 'x' }, list: [{ name: 'a' }], d: '0s', a: 'ok' })).toEqual(['$.d: must be greater than 0s']);
  });

  it('a rule it does not know is a loud programming error, not a silent pass', () => {
    const t = typeOf(`message T { string a = 1 [(validate.rules).string = {shiny_new_rule: true}]; }`);
    expect(() => pgvProblemsOf(t, { a: 'x' })).toThrow(PgvUnsupportedRuleError);
    expect(() => pgvProblemsOf(t, { a: 'x' })).toThrow(/string\.shiny_new_rule \(at \$\.a\) is not implemented by src\/proto\/pgv\.ts/);
  });

  it('real Envoy messages: typed configs inside Any are checked at their own path', () => {
    const listener = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 80 } },
      filter_chains: [{ filters: [{ name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: '', cluster: 'c' } }] }],
    };
    const bytes = encodeJson('envoy.config.listener.v3.Listener', listener);
    expect(pgvProblemsInBytes('envoy.config.listener.v3.Listener', bytes, '$.resources[0]')).toEqual([
      { path: '$.resources[0].filter_chains[0].filters[0].typed_config.stat_prefix', message: 'at least 1 characters required' },
    ]);
    const cla = { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 80 } } }, load_balancing_weight: 0 }] }] };
    expect(pgvProblems('envoy.config.endpoint.v3.ClusterLoadAssignment', cla)).toEqual([
      { path: '$.endpoints[0].lb_endpoints[0].load_balancing_weight', message: 'must be at least 1' },
    ]);
  });
});
