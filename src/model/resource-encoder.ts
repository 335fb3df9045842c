// Encodes translated resources, remembering each encoding by content from one call to the next,
// so a revision that changes one endpoint encodes one ClusterLoadAssignment, and unchanged
// resources keep the very same EncodedResource object (the xDS cache recognises it by identity
// and skips hashing it). Each owner (the API's checks, the publisher) keeps its own encoder.
import type { EncodedResource, TranslatedResource } from './translate.js';
import { encodeResource } from './translate.js';

export class ResourceEncoder {
  /** The encodings the previous call used, by type and name, with the content they encode. */
  private previous = new Map<string, { body: string; encoded: EncodedResource }>();
  private encodedCount = 0;

  /**
   * Encodes every resource of a translation, reusing the previous call's encoding of equal
   * content. Encodings the call does not use are forgotten, so memory follows the config.
   * Throws (ProtoJsonError) when a generated resource does not encode: a translation bug.
   */
  encodeAll(resources: readonly TranslatedResource[]): Map<TranslatedResource, EncodedResource> {
    const out = new Map<TranslatedResource, EncodedResource>();
    const next = new Map<string, { body: string; encoded: EncodedResource }>();
    for (const r of resources) {
      // Short identity keys hash fast; the content is then one string comparison.
      const id = `${r.typeUrl}\u0000${r.name}`;
      const body = contentOf(r);
      const was = this.previous.get(id);
      let encoded: EncodedResource;
      if (was && was.body === body) encoded = was.encoded;
      else {
        encoded = encodeResource(r);
        this.encodedCount++;
      }
      next.set(id, { body, encoded });
      out.set(r, encoded);
    }
    this.previous = next;
    return out;
  }

  /** Resources encoded (not reused) since this encoder was made. */
  get encoded(): number {
    return this.encodedCount;
  }
}

/**
 * Equal texts mean equal encodings. Generated JSON is built in a fixed key order, so its plain
 * JSON text identifies it (content written in another order only misses the reuse); raw
 * resources arrive encoded, and their bytes identify them.
 */
function contentOf(r: TranslatedResource): string {
  return r.bytes ? `b${Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength).toString('latin1')}` : `j${JSON.stringify(r.json)}`;
}
