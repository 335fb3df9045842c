// The API's bearer token: read from --api-token-file, or generated on first start into the data
// dir (mode 0600) and printed once. Every /v1 route needs it, reads included, since raw resources
// may hold secrets (SDS) and the node list reveals the fleet; /healthz, /metrics and /docs are open.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

export const TOKEN_FILE_NAME = 'api-token';

export interface LoadedToken {
  token: string;
  /** Where it came from. */
  file: string;
  /** True when it was created just now (the caller prints it once). */
  generated: boolean;
}

export function loadApiToken(opts: { tokenFile?: string; dataDir: string }): LoadedToken {
  if (opts.tokenFile) {
    let text: string;
    try {
      text = readFileSync(opts.tokenFile, 'utf8');
    } catch (err) {
      throw new Error(`cannot read --api-token-file ${opts.tokenFile}: ${(err as Error).message}`, { cause: err });
    }
    const token = text.trim();
    if (token.length < 16 || /\s/.test(token)) {
      throw new Error(`--api-token-file ${opts.tokenFile} must hold one token of at least 16 characters without spaces`);
    }
    return { token, file: opts.tokenFile, generated: false };
  }
  const file = join(opts.dataDir, TOKEN_FILE_NAME);
  if (existsSync(file)) return loadApiToken({ tokenFile: file, dataDir: opts.dataDir });
  const token = randomBytes(32).toString('base64url');
  // 'wx' fails if another process created it meanwhile rather than overwriting its token.
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, file, generated: true };
}

/** onRequest hook: refuses requests without the right bearer token. */
export function requireToken(expected: string): (req: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const want = Buffer.from(expected);
  return async (req) => {
    const header = req.headers.authorization;
    if (!header) throw new ApiError(401, 'unauthorized', 'missing the API token: send "Authorization: Bearer <token>" (the token is in --api-token-file or <data-dir>/api-token)');
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const got = Buffer.from(m?.[1] ?? '');
    if (!m || got.length !== want.length || !timingSafeEqual(got, want)) {
      throw new ApiError(401, 'unauthorized', 'wrong API token: use the token from --api-token-file or <data-dir>/api-token');
    }
  };
}
