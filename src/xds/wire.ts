// Protobuf wire-format helpers for the xDS responses. Responses are built by concatenating
// pre-encoded pieces (each resource's Any is framed once and shared), so the server never runs a
// generic encoder per stream. Field numbers follow envoy/service/discovery/v3/discovery.proto.
// Reference: https://protobuf.dev/programming-guides/encoding/ (varints, length-delimited fields).

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** DiscoveryResponse fields. */
export const DiscoveryResponseField = { versionInfo: 1, resources: 2, typeUrl: 4, nonce: 5 } as const;
/** DeltaDiscoveryResponse fields. */
export const DeltaResponseField = { systemVersionInfo: 1, resources: 2, typeUrl: 4, nonce: 5, removedResources: 6 } as const;
/** discovery.v3.Resource fields. */
const ResourceField = { version: 1, resource: 2, name: 3 } as const;
/** google.protobuf.Any fields. */
const AnyField = { typeUrl: 1, value: 2 } as const;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    buf[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[offset++] = n;
  return offset;
}

/** One length-delimited field: tag, length, payload. */
export function lenField(field: number, payload: Uint8Array): Buffer {
  const tag = (field << 3) | WIRE_LEN;
  const out = Buffer.allocUnsafe(varintSize(tag) + varintSize(payload.length) + payload.length);
  let o = writeVarint(out, 0, tag);
  o = writeVarint(out, o, payload.length);
  out.set(payload, o);
  return out;
}

/** A string field; empty strings are omitted as proto3 does (returns an empty buffer). */
export function stringField(field: number, value: string): Buffer {
  if (value === '') return Buffer.alloc(0);
  return lenField(field, Buffer.from(value, 'utf8'));
}

/** The encoded google.protobuf.Any for a resource (not yet framed as a field). */
export function encodeAny(typeUrl: string, value: Uint8Array): Buffer {
  return Buffer.concat([stringField(AnyField.typeUrl, typeUrl), lenField(AnyField.value, value)]);
}

/** `repeated google.protobuf.Any resources = 2` element of a DiscoveryResponse. */
export function sotwResourceField(typeUrl: string, value: Uint8Array): Buffer {
  return lenField(DiscoveryResponseField.resources, encodeAny(typeUrl, value));
}

/** `repeated Resource resources = 2` element of a DeltaDiscoveryResponse. */
export function deltaResourceField(name: string, version: string, any: Uint8Array): Buffer {
  const resource = Buffer.concat([
    stringField(ResourceField.version, version),
    lenField(ResourceField.resource, any),
    stringField(ResourceField.name, name),
  ]);
  return lenField(DeltaResponseField.resources, resource);
}

/** Concatenates pre-encoded fields into one message buffer. */
export function concatFields(parts: readonly Buffer[]): Buffer {
  let total = 0;
  for (const p of parts) total += p.length;
  return Buffer.concat(parts as Buffer[], total);
}

export interface WireField {
  field: number;
  wireType: number;
  /** Varint value (wire type 0), as a number; exact up to 2^53. */
  varint?: number;
  /** Payload of a length-delimited field (wire type 2), a view into the input. */
  bytes?: Uint8Array;
}

/**
 * Walks the top-level fields of an encoded message. Used to read a few fields of a resource
 * without a schema (resource names, a cluster's EDS service name) and by tests.
 * Throws on truncated or malformed input.
 */
export function* scanFields(buf: Uint8Array): Generator<WireField> {
  let o = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (o >= buf.length) throw new Error('truncated varint');
      const b = buf[o++] as number;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  };
  while (o < buf.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) throw new Error('field number 0');
    switch (wireType) {
      case WIRE_VARINT:
        yield { field, wireType, varint: readVarint() };
        break;
      case WIRE_I64:
        if (o + 8 > buf.length) throw new Error('truncated fixed64');
        o += 8;
        yield { field, wireType };
        break;
      case WIRE_LEN: {
        const len = readVarint();
        if (o + len > buf.length) throw new Error('truncated length-delimited field');
        yield { field, wireType, bytes: buf.subarray(o, o + len) };
        o += len;
        break;
      }
      case WIRE_I32:
        if (o + 4 > buf.length) throw new Error('truncated fixed32');
        o += 4;
        yield { field, wireType };
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

/** The last occurrence of a length-delimited field, or undefined (proto3: last one wins). */
export function readLenField(buf: Uint8Array, field: number): Uint8Array | undefined {
  let found: Uint8Array | undefined;
  for (const f of scanFields(buf)) if (f.field === field && f.bytes) found = f.bytes;
  return found;
}

/** The last occurrence of a varint field, or undefined. */
export function readVarintField(buf: Uint8Array, field: number): number | undefined {
  let found: number | undefined;
  for (const f of scanFields(buf)) if (f.field === field && f.varint !== undefined) found = f.varint;
  return found;
}

const utf8 = new TextDecoder('utf-8');

/** A string field's value, '' when absent. */
export function readStringField(buf: Uint8Array, field: number): string {
  const b = readLenField(buf, field);
  return b ? utf8.decode(b) : '';
}

/** Where the occurrences of one repeated field sit in a message. */
export interface FieldSpan {
  start: number;
  end: number;
  /** No other field appears between the first and the last occurrence. */
  contiguous: boolean;
}

export interface MessageOutline {
  /** The first structural problem, or null when the top level is well-formed. */
  problem: string | null;
  /** Occurrences of the `span` field asked for, or null if it does not occur. */
  span: FieldSpan | null;
  /** Payload of the last occurrence of the `text` field asked for, or null. */
  text: Uint8Array | null;
}

/**
 * Checks that the top-level fields of a message are well-formed (tags, varints and lengths within
 * bounds) and, in the same pass, locates one repeated field and one string field. protobufjs
 * clamps truncated strings instead of failing, so requests are checked here first; the span lets
 * a stream recognise a repeated resource_names list without decoding it. `knownSpan`, called
 * where the span field first occurs, may return the length of bytes it recognises there (already
 * validated earlier), which are then skipped in one step.
 */
export function outlineMessage(buf: Uint8Array, spanField = 0, textField = 0, knownSpan?: (at: number) => number): MessageOutline {
  const n = buf.length;
  let o = 0;
  let span: FieldSpan | null = null;
  let lastWasSpan = false;
  let text: Uint8Array | null = null;
  const fail = (problem: string): MessageOutline => ({ problem, span: null, text: null });
  while (o < n) {
    const at = o;
    if (span === null && knownSpan && (buf[o] as number) === ((spanField << 3) | WIRE_LEN)) {
      // The caller recognises these bytes (a list it has already checked): step over them whole.
      const len = knownSpan(at);
      if (len > 0) {
        span = { start: at, end: at + len, contiguous: true };
        lastWasSpan = true;
        o = at + len;
        continue;
      }
    }
    // Tags and lengths are almost always one byte; take the fast path before the general varint.
    let tag = buf[o] as number;
    if (tag < 0x80) o++;
    else {
      const r = readVarintAt(buf, o);
      if (r < 0) return fail(`truncated field tag at byte ${at}`);
      tag = varintValue;
      o = r;
    }
    if (tag < 8) return fail(`invalid field number 0 at byte ${at}`);
    const field = Math.floor(tag / 8);
    let payload = -1;
    switch (tag & 7) {
      case WIRE_VARINT: {
        const r = readVarintAt(buf, o);
        if (r < 0) return fail(`truncated varint in field ${field} at byte ${at}`);
        o = r;
        break;
      }
      case WIRE_I64:
        o += 8;
        break;
      case WIRE_LEN: {
        let len = o < n ? (buf[o] as number) : 0x80;
        if (len < 0x80) o++;
        else {
          const r = readVarintAt(buf, o);
          if (r < 0) return fail(`truncated length of field ${field} at byte ${at}`);
          len = varintValue;
          o = r;
        }
        payload = o;
        o += len;
        break;
      }
      case WIRE_I32:
        o += 4;
        break;
      default:
        return fail(`unsupported wire type ${tag & 7} in field ${field} at byte ${at}`);
    }
    if (o > n) return fail(`field ${field} at byte ${at} runs past the end of the ${n}-byte message`);
    if (field === spanField) {
      if (!span) span = { start: at, end: o, contiguous: true };
      else {
        if (!lastWasSpan) span.contiguous = false;
        span.end = o;
      }
      lastWasSpan = true;
    } else {
      lastWasSpan = false;
      if (field === textField && payload >= 0) text = buf.subarray(payload, o);
    }
  }
  return { problem: null, span, text };
}

/** Set by readVarintAt: the value it read. */
let varintValue = 0;

/** Reads a varint at `o` into varintValue; returns the offset after it, or -1 if truncated or too long. */
function readVarintAt(buf: Uint8Array, o: number): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (o >= buf.length) return -1;
    const b = buf[o++] as number;
    result += (b & 0x7f) * mul;
    if (b < 0x80) {
      varintValue = result;
      return o;
    }
    mul *= 128;
  }
  return -1;
}

/** The first structural problem of a message's top level, or null. */
export function wellFormedProblem(buf: Uint8Array): string | null {
  return outlineMessage(buf).problem;
}
