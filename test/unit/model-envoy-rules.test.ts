// Envoy's protoc-gen-validate rules on what a config serves (src/model/envoy-rules.ts): raw
// resources report paths inside the document; generated resources point at the item they came
// from and name the Envoy field, since that field has no path in the document.
import { describe, expect, it } from 'vitest';
import { generatedResourceRuleProblems, rawResourceRuleProblems } from '../../src/model/envoy-rules.js';
import { decodeRawResource } from '../../src/model/raw-resources.js';
import { encodeResource, type TranslatedResource } from '../../src/model/translate.js';
import { ResourceType } from '../../src/model/type-urls.js';

describe('Envoy rules on served resources', () => {
  it('raw resources: violations at their path in the document', () => {
    const d = decodeRawResource({ '@type': ResourceType.Cluster, name: 'c', connect_timeout: '0s', per_connection_buffer_limit_bytes: 1 }, '$.resources[3]');
    if (!('resource' in d)) throw new Error(JSON.stringify(d.problems));
    expect(rawResourceRuleProblems(d.resource, '$.resources[3]')).toEqual([{ path: '$.resources[3].connect_timeout', message: 'must be greater than 0s' }]);
  });

  it('generated resources: the origin item, the resource and the Envoy field', () => {
    const r: TranslatedResource = { typeUrl: ResourceType.Cluster, name: 'c', origin: '$.clusters[2]', json: { name: 'c', connect_timeout: '0s', type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } } } };
    expect(generatedResourceRuleProblems(r, encodeResource(r).bytes)).toEqual([
      { path: '$.clusters[2]', message: 'the generated Cluster "c" would be refused by Envoy: connect_timeout: must be greater than 0s' },
    ]);
    const ok: TranslatedResource = { ...r, json: { ...r.json, connect_timeout: '1s' } };
    expect(generatedResourceRuleProblems(ok, encodeResource(ok).bytes)).toEqual([]);
  });

  it('results are remembered by content, so the answer for the same bytes at another path is re-rooted', () => {
    const a = decodeRawResource({ '@type': ResourceType.Cluster, name: 'c', connect_timeout: '0s' }, '$');
    if (!('resource' in a)) throw new Error('decode failed');
    expect(rawResourceRuleProblems(a.resource, '$.resources[0]')[0]?.path).toBe('$.resources[0].connect_timeout');
    expect(rawResourceRuleProblems(a.resource, '$[7]')[0]?.path).toBe('$[7].connect_timeout');
  });
});
