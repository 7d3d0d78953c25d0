/**
 * How long the hub waits for slow or silent clients before it drops them, so a half-open socket or
 * a client trickling bytes cannot hold a connection slot for long. Defaults suit a LAN of Pis
 * (a TLS handshake takes well under 1 s even on a Pi Zero); tests shrink them via HubOptions.
 * docs/security.md lists these beside the size limits.
 */
export interface HubTimeouts {
  /** A TLS handshake (HTTPS and MQTTS) must finish within this. */
  tlsHandshakeMs: number;
  /** After TLS, an MQTT client must send CONNECT within this (aedes connectTimeout). */
  mqttConnectMs: number;
  /** An HTTP connection idle this long is closed (fastify connectionTimeout). */
  httpIdleMs: number;
  /** All request headers must arrive within this (node headersTimeout). */
  httpHeadersMs: number;
  /** The whole request (headers and body) must arrive within this (node requestTimeout). */
  httpRequestMs: number;
  /** How often node checks the two above (connectionsCheckingInterval; node's default is 30 s). */
  httpCheckIntervalMs: number;
}

export const DEFAULT_TIMEOUTS: HubTimeouts = {
  tlsHandshakeMs: 10_000,
  mqttConnectMs: 10_000,
  httpIdleMs: 30_000,
  httpHeadersMs: 15_000,
  httpRequestMs: 30_000,
  httpCheckIntervalMs: 2_000,
};

export function resolveTimeouts(partial: Partial<HubTimeouts> | undefined): HubTimeouts {
  const t = { ...DEFAULT_TIMEOUTS, ...partial };
  // node refuses headersTimeout > requestTimeout.
  return { ...t, httpHeadersMs: Math.min(t.httpHeadersMs, t.httpRequestMs) };
}
