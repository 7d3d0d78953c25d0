import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * Node's libuv TCP handles without net.Socket (`process.binding('tcp_wrap')` and `'stream_wrap'`:
 * the objects lib/net.js itself is built on, the same in Node 20, 22 and 24). The service proxy's
 * connection path uses them (raw-tcp-proxy.ts): on this project's 2-core boxes a proxied
 * connection through two net.Sockets cost 390–530 µs of CPU, of which the kernel's accept,
 * connect, writes and closes were well under half; the same relay on these handles cost
 * 217–231 µs, a C relay 92–103 µs (docs/benchmarks.md, "Connection path on raw handles").
 *
 * Only what the proxy needs is typed here. Every call returns 0 or a negative libuv error code;
 * completions arrive on the request objects' `oncomplete`, reads on the handle's `onread` (with
 * the byte count or error in `streamBaseState[kReadBytesOrError]`). `loadRawTcp()` is undefined
 * when the bindings are missing or not what this expects (a future Node): callers then use
 * net.Socket (tcp-proxy.ts).
 */

/** One libuv TCP handle (a server or a connection). */
export interface RawTcp {
  /** Server: a new connection (status < 0: accept failed). Function-valued properties take functions only (a native check). */
  onconnection: (this: RawTcp, status: number, client: RawTcp | undefined) => void;
  /** A read landed in the user buffer (or EOF / an error): `streamBaseState[kReadBytesOrError]`. May return the buffer for the next read. */
  onread: (this: RawTcp) => Uint8Array | undefined;
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
  listen(backlog: number): number;
  connect(req: RawConnectReq, address: string, port: number): number;
  connect6(req: RawConnectReq, address: string, port: number): number;
  readStart(): number;
  readStop(): number;
  /** Reads go into this buffer from now on (no allocation per read). */
  useUserBuffer(buf: Uint8Array): void;
  writeBuffer(req: RawWriteReq, data: Uint8Array): number;
  shutdown(req: RawShutdownReq): number;
  /** `cb` is called with `this` = the handle once libuv has closed it. */
  close(cb?: (this: RawTcp) => void): void;
  /** Close with a RST (uv_tcp_close_reset); an error when a shutdown is in flight. */
  reset(cb?: (this: RawTcp) => void): number;
  setNoDelay(on: boolean): number;
  getsockname(out: { address?: string; port?: number }): number;
  getpeername(out: { address?: string; port?: number }): number;
  /** Ours: the connection this handle belongs to while open, and the one told when it has closed (two properties on every handle, one shape). */
  owner?: unknown;
  closer?: unknown;
}

export interface RawConnectReq {
  /** `handle`: the connecting handle (`this` is the request). */
  oncomplete: (status: number, handle: RawTcp) => void;
  address: string;
  port: number;
}

export interface RawWriteReq {
  handle: RawTcp;
  oncomplete: (this: RawWriteReq, status: number) => void;
  /** Ours: keeps the chunk referenced while libuv writes it; and whom to tell. */
  buffer: Uint8Array | null;
  owner: unknown;
}

export interface RawShutdownReq {
  handle: RawTcp;
  oncomplete: (this: RawShutdownReq, status: number) => void;
  /** Ours: whom to tell. */
  owner: unknown;
}

export interface RawTcpBindings {
  newServer(): RawTcp;
  newSocket(): RawTcp;
  newConnectReq(): RawConnectReq;
  newWriteReq(): RawWriteReq;
  newShutdownReq(): RawShutdownReq;
  /** The last read's byte count (> 0) or error (< 0; UV_EOF at end of stream). */
  readResult(): number;
  /** Whether the last writeBuffer left bytes for later (oncomplete follows); otherwise all were written at once. */
  lastWriteWasAsync(): boolean;
}

/** libuv's end of stream. */
export const UV_EOF = -4095;

/** `ECONNRESET` for -104, etc.; the number itself when the system has no name for it. */
export function uvErrorName(code: number): string {
  try {
    return getSystemErrorName(code);
  } catch {
    return String(code);
  }
}

interface TcpWrapBinding {
  TCP: new (type: number) => RawTcp;
  TCPConnectWrap: new () => RawConnectReq;
  constants: { SOCKET: number; SERVER: number };
}

interface StreamWrapBinding {
  WriteWrap: new () => RawWriteReq;
  ShutdownWrap: new () => RawShutdownReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

let cached: RawTcpBindings | null | undefined;

/** The bindings, checked once; undefined when this Node does not offer them as expected (or ORCHARD_PROXY_NET=1 asks for net.Socket). */
export function loadRawTcp(): RawTcpBindings | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  if (process.env.ORCHARD_PROXY_NET === '1') return undefined;
  try {
    const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
    if (typeof binding !== 'function') return undefined;
    const tcp = binding.call(process, 'tcp_wrap') as Partial<TcpWrapBinding>;
    const stream = binding.call(process, 'stream_wrap') as Partial<StreamWrapBinding>;
    const { TCP, TCPConnectWrap, constants } = tcp;
    const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = stream;
    if (
      typeof TCP !== 'function' ||
      typeof TCPConnectWrap !== 'function' ||
      typeof constants?.SOCKET !== 'number' ||
      typeof constants.SERVER !== 'number' ||
      typeof WriteWrap !== 'function' ||
      typeof ShutdownWrap !== 'function' ||
      !(streamBaseState instanceof Int32Array) ||
      typeof kReadBytesOrError !== 'number' ||
      typeof kLastWriteWasAsync !== 'number'
    ) {
      return undefined;
    }
    const proto = TCP.prototype as Partial<Record<keyof RawTcp, unknown>>;
    for (const m of [
      'bind',
      'bind6',
      'listen',
      'connect',
      'connect6',
      'readStart',
      'readStop',
      'useUserBuffer',
      'writeBuffer',
      'shutdown',
      'close',
      'reset',
      'setNoDelay',
      'getsockname',
      'getpeername',
    ] as const) {
      if (typeof proto[m] !== 'function') return undefined;
    }
    const { SOCKET, SERVER } = constants;
    cached = {
      newServer: () => new TCP(SERVER),
      newSocket: () => new TCP(SOCKET),
      newConnectReq: () => new TCPConnectWrap(),
      newWriteReq: () => new WriteWrap(),
      newShutdownReq: () => new ShutdownWrap(),
      readResult: () => streamBaseState[kReadBytesOrError]!,
      lastWriteWasAsync: () => streamBaseState[kLastWriteWasAsync] !== 0,
    };
    return cached;
  } catch {
    return undefined;
  }
}

/** Binds `h` to (address, port): IPv6 addresses through bind6. */
export function bindRaw(h: RawTcp, address: string, port: number): number {
  return net.isIPv6(address) ? h.bind6(address, port, 0) : h.bind(address, port);
}

/** Starts connecting `h` to (address, port). `address` must be an IP address: nothing is looked up (endpoints are pod and node addresses; a name fails with EINVAL, and that endpoint is ejected). */
export function connectRaw(h: RawTcp, req: RawConnectReq, address: string, port: number): number {
  req.address = address;
  req.port = port;
  return net.isIPv6(address) ? h.connect6(req, address, port) : h.connect(req, address, port);
}
