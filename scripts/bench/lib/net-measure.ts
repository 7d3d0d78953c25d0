import dgram from 'node:dgram';
import net from 'node:net';
import { percentile } from './stats.js';

/**
 * The client side of the service data-path bench (scripts/bench/services.ts): sequential or
 * bounded-concurrency TCP/UDP load against (host, port), timed with hrtime. The servers it expects:
 *   sink  reads until EOF, then replies with the byte count as text and closes
 *   echo  writes back what it reads (and a UDP echo for `udpRoundTrips`)
 *   once  writes back 64 B, then closes (`oneShot`, `newConnections`)
 */

export interface Target {
  host: string;
  port: number;
}

export interface Latency {
  p50: number;
  p99: number;
}

const now = (): bigint => process.hrtime.bigint();
const microsSince = (t0: bigint): number => Number(now() - t0) / 1000;

export function connect(t: Target, timeoutMs = 3000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: t.host, port: t.port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`connect ${t.host}:${t.port}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(timer);
      resolve(c);
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(`connect ${t.host}:${t.port}: ${err.code ?? err.message}`));
    });
  });
}

/** One connection writes `mib` MiB into the sink; MiB/s until the sink's byte count came back. */
export async function bulk(t: Target, mib: number): Promise<number> {
  const c = await connect(t);
  const chunk = Buffer.alloc(256 * 1024, 7);
  const total = mib * 2 ** 20;
  const t0 = now();
  const reply = new Promise<string>((resolve, reject) => {
    let r = '';
    c.on('data', (d: Buffer) => void (r += d.toString()));
    c.on('end', () => resolve(r));
    c.on('error', reject);
  });
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
  }
  c.end();
  const got = Number((await reply).trim());
  const s = microsSince(t0) / 1e6;
  c.destroy();
  if (got !== total) throw new Error(`sink got ${got} of ${total} bytes`);
  return mib / s;
}

/** `n` sequential 64 B request/response round trips on one connection, after 200 warm-up ones. */
export async function roundTrips(t: Target, n: number): Promise<Latency> {
  const c = await connect(t);
  const msg = Buffer.alloc(64, 1);
  const lat: number[] = [];
  let pending: (() => void) | undefined;
  let got = 0;
  c.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= 64) {
      got -= 64;
      pending?.();
    }
  });
  const closed = new Promise<never>((_, reject) => c.once('close', () => reject(new Error(`echo ${t.host}:${t.port} closed`))));
  closed.catch(() => undefined);
  for (let i = 0; i < n + 200; i++) {
    const t0 = now();
    await Promise.race([
      new Promise<void>((r) => {
        pending = r;
        c.write(msg);
      }),
      closed,
    ]);
    if (i >= 200) lat.push(microsSince(t0));
  }
  c.destroy();
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

/**
 * One request on a new connection: connect, 64 B out, 64 B back and the server's close (an
 * echo-once server closes first, so TIME_WAIT stays on its side). Resolves with µs.
 */
export function oneShot(t: Target, timeoutMs = 5000): Promise<number> {
  const msg = Buffer.alloc(64, 2);
  const t0 = now();
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: t.host, port: t.port, noDelay: true });
    const timer = setTimeout(() => c.destroy(new Error(`${t.host}:${t.port}: no echo within ${timeoutMs} ms`)), timeoutMs);
    let got = 0;
    c.once('connect', () => c.write(msg));
    c.on('data', (d: Buffer) => void (got += d.length));
    c.once('close', () => {
      clearTimeout(timer);
      if (got >= 64) resolve(microsSince(t0));
      else reject(new Error(`${t.host}:${t.port}: echo incomplete (${got} B)`));
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code ? `${t.host}:${t.port}: ${err.code}` : err.message));
    });
  });
}

/** `n` new connections, `concurrency` at a time, each one `oneShot`; connections/s. */
export async function newConnections(t: Target, n: number, concurrency = 32): Promise<number> {
  let started = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < n) {
        started += 1;
        await oneShot(t);
      }
    }),
  );
  return n / (microsSince(t0) / 1e6);
}

/** `n` sequential 64 B datagrams to a UDP echo (after 200 warm-up ones); a lost one times out. */
export async function udpRoundTrips(t: Target, n: number, timeoutMs = 1000): Promise<Latency> {
  const s = dgram.createSocket(net.isIPv6(t.host) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.connect(t.port, t.host, () => resolve());
  });
  const msg = Buffer.alloc(64, 3);
  const lat: number[] = [];
  try {
    for (let i = 0; i < n + 200; i++) {
      const t0 = now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          s.removeAllListeners('message');
          reject(new Error(`udp ${t.host}:${t.port}: no echo within ${timeoutMs} ms`));
        }, timeoutMs);
        s.once('message', () => {
          clearTimeout(timer);
          resolve();
        });
        s.send(msg);
      });
      if (i >= 200) lat.push(microsSince(t0));
    }
  } finally {
    s.close();
  }
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}
