import { beforeAll, describe } from 'vitest';
import { loadRawTcp } from './raw-tcp.js';
import { RawTcpProxy, type ServiceTcpProxy } from './raw-tcp-proxy.js';
import { TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';

/**
 * Both TCP proxies pass the same tests: raw-tcp-proxy.ts on libuv handles (what the agent uses)
 * and tcp-proxy.ts on net.Socket (its fallback on a Node without the bindings). `forEachTcpProxy`
 * runs a block of describes once per implementation; `newTcpProxy` inside it makes the current
 * one. The raw one must load on every supported Node: a Node that breaks the bindings fails here.
 */
export const TCP_PROXY_IMPLS = ['raw', 'net'] as const;
export type TcpProxyImpl = (typeof TCP_PROXY_IMPLS)[number];

let current: TcpProxyImpl = 'raw';

export function newTcpProxy(opts: TcpProxyOptions): ServiceTcpProxy {
  if (current === 'net') return new TcpProxy(opts);
  const raw = loadRawTcp();
  if (raw === undefined) throw new Error('the raw TCP bindings (process.binding tcp_wrap / stream_wrap) did not load on this Node');
  return new RawTcpProxy(opts, raw);
}

export function forEachTcpProxy(body: (impl: TcpProxyImpl) => void): void {
  describe.each(TCP_PROXY_IMPLS)('proxy on %s', (impl) => {
    beforeAll(() => {
      current = impl;
    });
    body(impl);
  });
}
