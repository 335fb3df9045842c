// Owns the xDS port's TLS material: reading PEM files with errors that name the file, checking
// that certificate and key belong together before the port opens, and the grpc-js credentials.
// With a client CA the server requires and verifies client certificates (mTLS).
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

export interface XdsTls {
  /** PEM certificate chain of the server. */
  cert: Buffer;
  /** PEM private key of the server. */
  key: Buffer;
  /** PEM CA bundle; when set, clients must present a certificate it signed. */
  clientCa?: Buffer;
}

export interface XdsTlsFiles {
  cert: string;
  key: string;
  clientCa?: string;
}

function readPem(path: string, what: string, flag: string): Buffer {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the xDS ${what} ${JSON.stringify(path)} (${flag}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!buf.toString('latin1').includes('-----BEGIN ')) {
    throw new Error(`the xDS ${what} ${JSON.stringify(path)} (${flag}) is not PEM: expected a "-----BEGIN ..." block`);
  }
  return buf;
}

/** Reads the files given to --xds-tls-cert / --xds-tls-key / --xds-client-ca. */
export function loadTlsFiles(files: XdsTlsFiles): XdsTls {
  const tls: XdsTls = {
    cert: readPem(files.cert, 'TLS certificate', '--xds-tls-cert'),
    key: readPem(files.key, 'TLS key', '--xds-tls-key'),
  };
  if (files.clientCa !== undefined) tls.clientCa = readPem(files.clientCa, 'client CA', '--xds-client-ca');
  return tls;
}

/** Checks the material with OpenSSL and builds grpc-js server credentials. Throws a clear error. */
export function serverCredentials(tls: XdsTls): grpc.ServerCredentials {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.clientCa ? { ca: tls.clientCa } : {}) });
  } catch (err) {
    throw new Error(`invalid xDS TLS material: ${(err as Error).message} (check that the certificate and key are PEM and belong together, and that the client CA is a PEM certificate)`);
  }
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}
