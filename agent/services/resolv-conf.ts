/**
 * The name service's upstreams: the `nameserver` lines of the host's /etc/resolv.conf (the agent
 * lives in the host netns, so a systemd-resolved stub on 127.0.0.53 works as an upstream),
 * re-read when the file's mtime changes, our own listen addresses left out (no forwarding loop).
 */
import { statSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Clock } from '../clock.js';

/** IPv4/IPv6 `nameserver` addresses in file order, duplicates and invalid entries dropped; a zone index (`fe80::1%eth0`) kept. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, value] = line.split(/\s+/);
    if (key !== 'nameserver' || value === undefined) continue;
    const host = value.split('%')[0] ?? '';
    if (isIP(host) === 0 || out.includes(value)) continue;
    out.push(value);
  }
  return out;
}

export interface Upstream {
  host: string;
  port: number;
  family: 4 | 6;
}

/** `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353` → host, port (53 by default); undefined when not an address. */
export function parseUpstream(spec: string): Upstream | undefined {
  let host = spec;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  const v4port = /^([\d.]+):(\d+)$/.exec(spec);
  if (bracket) {
    host = bracket[1] ?? '';
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (v4port) {
    host = v4port[1] ?? '';
    port = Number(v4port[2]);
  }
  const family = isIP(host.split('%')[0] ?? '');
  if (family === 0 || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  return { host, port, family: family as 4 | 6 };
}

export interface ResolvConfSource {
  path?: string;
  /** Our own listen addresses (`host` or `host:port`), never returned as upstreams. */
  skip?: readonly string[];
  clock: Clock;
  /** The file is stat'ed at most this often (default 1 s); its text re-read only when the mtime changed. */
  checkEveryMs?: number;
  stat?: (path: string) => { mtimeMs: number };
  read?: (path: string) => string;
}

/**
 * `upstreams()` for DnsServer. A missing or unreadable file gives no upstreams (the server then
 * answers SERVFAIL for outside names), never an exception: k3s#6787 is CoreDNS crash-looping on it.
 */
export function resolvConfUpstreams(src: ResolvConfSource): () => string[] {
  const path = src.path ?? '/etc/resolv.conf';
  const stat = src.stat ?? ((p: string) => statSync(p));
  const read = src.read ?? ((p: string) => readFileSync(p, 'utf8'));
  const every = src.checkEveryMs ?? 1_000;
  const skip = new Set(src.skip ?? []);
  let checkedAt = -Infinity;
  let mtime: number | undefined;
  let cached: string[] = [];
  return () => {
    const now = src.clock.now();
    if (now - checkedAt < every) return cached;
    checkedAt = now;
    try {
      const m = stat(path).mtimeMs;
      if (m !== mtime) {
        cached = parseResolvConf(read(path)).filter((ns) => !skip.has(ns) && !skip.has(`${ns}:53`) && !skip.has(`[${ns}]:53`));
        mtime = m;
      }
    } catch {
      cached = [];
      mtime = undefined;
    }
    return cached;
  };
}
