// A small client of the REST API for the CLI and tests: bearer token, JSON/YAML bodies, and
// errors that carry the API's problems list.
export interface ApiProblem {
  path: string;
  message: string;
}

export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems: ApiProblem[] = [],
  ) {
    super(message);
    this.name = 'ApiClientError';
  }
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

export interface RequestOptions {
  body?: unknown;
  /** Sent as is when the body is a string (e.g. application/yaml); JSON otherwise. */
  contentType?: string;
  headers?: Record<string, string>;
}

export class ApiClient {
  constructor(private readonly opts: { baseUrl: string; token?: string; timeoutMs?: number }) {}

  async request<T>(method: string, path: string, ro: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...(ro.headers ?? {}) };
    if (this.opts.token) headers['authorization'] = `Bearer ${this.opts.token}`;
    let body: string | undefined;
    if (ro.body !== undefined) {
      body = typeof ro.body === 'string' ? ro.body : JSON.stringify(ro.body);
      headers['content-type'] = ro.contentType ?? 'application/json';
    }
    const url = new URL(path, this.opts.baseUrl).toString();
    let res: Response;
    try {
      res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000) });
    } catch (err) {
      const c = (err as { cause?: { code?: string; errors?: { code?: string }[] } }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? (err as Error).message;
      throw new ApiClientError(0, 'unreachable', `cannot reach the API at ${this.opts.baseUrl} (${cause}); is the control plane running? (set --api or EBPF_XDS_API)`);
    }
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    const parsed: unknown = type.includes('json') && text ? JSON.parse(text) : text;
    if (!res.ok) {
      const e = (parsed && typeof parsed === 'object' ? parsed : {}) as { code?: string; message?: string; problems?: ApiProblem[] };
      throw new ApiClientError(res.status, e.code ?? 'http_error', e.message ?? `HTTP ${res.status}`, e.problems ?? []);
    }
    return { status: res.status, headers: res.headers, body: parsed as T };
  }
}
