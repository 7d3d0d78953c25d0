import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';

/**
 * One GET to a registry, connecting to an address the caller already checked
 * (address-policy.ts) rather than resolving the host again: a DNS answer that changes between
 * the check and the connect (rebinding) cannot redirect the hub. TLS still verifies the
 * certificate against the host name (SNI + identity check use it). Never follows redirects:
 * the caller decides (registry-client.ts). The body is read up to `maxBytes`.
 */

export interface RegistryRequest {
  url: URL;
  /** The checked address to connect to. */
  address: string;
  accept: string;
  signal: AbortSignal;
  maxBytes: number;
}

export type RegistryResponse =
  | { status: number; header: (name: string) => string | undefined; body: string; tooLarge?: false }
  | { status: number; header: (name: string) => string | undefined; body: ''; tooLarge: true };

export type RegistryTransport = (req: RegistryRequest) => Promise<RegistryResponse>;

export const nodeTransport: RegistryTransport = (req) =>
  new Promise<RegistryResponse>((resolve, reject) => {
    const { url } = req;
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const secure = url.protocol === 'https:';
    const mod = secure ? https : http;
    const r = mod.request(
      {
        host: req.address,
        port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { accept: req.accept, host: url.host },
        signal: req.signal,
        agent: false,
        ...(secure ? { servername: isIP(hostname) === 0 ? hostname : '' } : {}),
      },
      (res) => {
        const header = (name: string): string | undefined => {
          const v = res.headers[name.toLowerCase()];
          return Array.isArray(v) ? v[0] : v;
        };
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length'] ?? '0');
        if (declared > req.maxBytes) {
          res.destroy();
          resolve({ status, header, body: '', tooLarge: true });
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > req.maxBytes) {
            res.destroy();
            resolve({ status, header, body: '', tooLarge: true });
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status, header, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end();
  });
