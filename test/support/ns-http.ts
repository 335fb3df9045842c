// HTTP requests from inside a topology host's network namespace (the control plane's REST API or
// an agent's metrics port bound to 127.0.0.1 there): a short `node -e` fetch run through nsenter.
import type { Host } from './netns.js';

const SCRIPT = `
const [method, url, headers, body] = process.argv.slice(1);
fetch(url, { method, headers: JSON.parse(headers), body: body ? Buffer.from(body, 'base64') : undefined })
  .then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))
  .catch((e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e.cause?.code ?? e.message) })));
`;

export interface NsResponse {
  status: number;
  body: string;
}

export async function nsFetch(host: Host, method: string, url: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<NsResponse> {
  const out = await host.exec(process.execPath, ['-e', SCRIPT, method, url, JSON.stringify(opts.headers ?? {}), opts.body ? Buffer.from(opts.body).toString('base64') : '']);
  return JSON.parse(out) as NsResponse;
}

/** The control plane's REST API from inside the namespace it runs in. */
export class NsApi {
  constructor(
    private readonly host: Host,
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await nsFetch(this.host, method, `${this.baseUrl}${path}`, { headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.body}`);
    return (r.body ? JSON.parse(r.body) : undefined) as T;
  }
}
