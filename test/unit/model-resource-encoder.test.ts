// ResourceEncoder: unchanged resources keep their encoded object from one revision to the next
// (the xDS cache relies on that identity), changed ones are encoded again, and encodings no
// longer used are forgotten.
import { describe, expect, it } from 'vitest';
import { ResourceEncoder } from '../../src/model/resource-encoder.js';
import { translate } from '../../src/model/translate.js';
import { validateConfig } from '../../src/model/validate.js';

function translation(port: number, routeDomain = '*') {
  const v = validateConfig({
    listeners: [{ name: 'l', address: '0.0.0.0', port: 1, mode: 'skb', cluster: 'a' }],
    clusters: [
      { name: 'a', endpoints: [{ address: '10.0.0.1', port }] },
      { name: 'b', endpoints: [{ address: '10.0.0.2', port: 80 }] },
    ],
    resources: [{ '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', name: 'r', virtual_hosts: [{ name: 'v', domains: [routeDomain] }] }],
  });
  if (!v.ok) throw new Error(JSON.stringify(v.problems));
  return translate(v).resources;
}
const by = (m: Map<{ typeUrl: string; name: string }, unknown>, type: string, name: string) => [...m].find(([r]) => r.typeUrl.endsWith(type) && r.name === name)?.[1];

describe('ResourceEncoder', () => {
  it('reuses encodings of unchanged content, generated or raw, and encodes what changed', () => {
    const enc = new ResourceEncoder();
    const first = enc.encodeAll(translation(80));
    expect(enc.encoded).toBe(6);
    const second = enc.encodeAll(translation(81));
    expect(enc.encoded).toBe(7); // only cluster a's ClusterLoadAssignment
    for (const [type, name] of [['Listener', 'l'], ['Cluster', 'a'], ['Cluster', 'b'], ['ClusterLoadAssignment', 'b'], ['RouteConfiguration', 'r']] as const) {
      expect(by(second, type, name), `${type} ${name}`).toBe(by(first, type, name));
    }
    expect(by(second, 'ClusterLoadAssignment', 'a')).not.toBe(by(first, 'ClusterLoadAssignment', 'a'));
    const third = enc.encodeAll(translation(81, 'x.test'));
    expect(enc.encoded).toBe(8); // the raw route, recognised by its bytes
    expect(by(third, 'RouteConfiguration', 'r')).not.toBe(by(second, 'RouteConfiguration', 'r'));
  });

  it('forgets encodings the last call did not use', () => {
    const enc = new ResourceEncoder();
    enc.encodeAll(translation(80));
    enc.encodeAll(translation(81));
    enc.encodeAll(translation(80));
    expect(enc.encoded).toBe(8); // port 80's CLA was dropped after the second call, so encoded again
  });
});
