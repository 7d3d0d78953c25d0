import http from 'node:http';
import https from 'node:https';

export interface HttpResult {
  status: number;
  body: unknown;
  text: string;
  headers: http.IncomingHttpHeaders;
}

/** A small HTTP(S) client for tests: pins the hub CA, sends a bearer token, parses JSON. */
export function request(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: string | object; contentType?: string; ca?: string; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const url = new URL(path, base);
  const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  if (payload !== undefined) {
    headers['content-type'] = opts.contentType ?? (typeof opts.body === 'string' ? 'application/yaml' : 'application/json');
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, ...(opts.ca ? { ca: opts.ca } : {}), timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, body, text, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
