import http from 'node:http';
import net from 'node:net';
import type { Probe } from '../../protocol/manifest.js';
import type { ContainerRuntime } from '../runtime/runtime.js';

/**
 * One probe attempt, no state: exec (in the container, through the runtime), httpGet (GET on
 * host:port, 2xx/3xx = success) or tcpSocket (a connection opens). Every attempt honours the
 * caller's AbortSignal, which the runner fires at timeoutSeconds.
 *
 * httpGet and tcpSocket dial from the agent's own network namespace: the container must be
 * reachable there (network: host, or a hostPort published on 127.0.0.1). The agent never dials
 * a bridge address it would have to discover.
 */

export interface ProbeResult {
  ok: boolean;
  /** Why, in a few words a user can act on (goes into logs and the container status). */
  detail: string;
}

export interface ProbeChecker {
  /** Never throws for an expected failure (refused, non-2xx, non-zero exit); may throw on abort. */
  check(probe: Probe, containerId: string, signal: AbortSignal): Promise<ProbeResult>;
}

const DETAIL_MAX = 256;

function short(s: string): string {
  const t = s.trim().replace(/\s+/g, ' ');
  return t.length > DETAIL_MAX ? `${t.slice(0, DETAIL_MAX)}…` : t;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RuntimeProbeChecker implements ProbeChecker {
  constructor(private readonly runtime: Pick<ContainerRuntime, 'exec'>) {}

  async check(probe: Probe, containerId: string, signal: AbortSignal): Promise<ProbeResult> {
    if (probe.exec !== undefined) return this.exec(probe.exec.command, containerId, signal);
    if (probe.httpGet !== undefined) return httpGetCheck(probe.httpGet, signal);
    if (probe.tcpSocket !== undefined) return tcpCheck(probe.tcpSocket, signal);
    // The schema requires exactly one handler; a hand-built probe without one never passes.
    return { ok: false, detail: 'probe has no exec, httpGet or tcpSocket' };
  }

  private async exec(command: string[], containerId: string, signal: AbortSignal): Promise<ProbeResult> {
    const r = await this.runtime.exec(containerId, command, signal);
    const out = short(r.output);
    const what = `command ${JSON.stringify(command)}`;
    if (r.exitCode === 0) return { ok: true, detail: `${what} exited with 0` };
    return { ok: false, detail: `${what} exited with ${r.exitCode}${out === '' ? '' : `: ${out}`}` };
  }
}

export function httpGetCheck(h: { host: string; port: number; path: string }, signal: AbortSignal): Promise<ProbeResult> {
  const url = `http://${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}${h.path.startsWith('/') ? h.path : `/${h.path}`}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    // agent:false — no keep-alive pool: a probe must see a fresh connection every time.
    const req = http.get(url, { signal, agent: false, headers: { 'user-agent': 'orchard-probe/1', accept: '*/*', connection: 'close' } }, (res) => {
      const status = res.statusCode ?? 0;
      // Only the status matters; drop the body instead of buffering it.
      res.destroy();
      if (status >= 200 && status < 400) done({ ok: true, detail: `GET ${url}: HTTP ${status}` });
      else done({ ok: false, detail: `GET ${url}: HTTP probe failed with status code ${status}` });
    });
    req.on('error', (err) => done({ ok: false, detail: `GET ${url}: ${short(errText(err))}` }));
  });
}

export function tcpCheck(t: { host: string; port: number }, signal: AbortSignal): Promise<ProbeResult> {
  const addr = `${t.host}:${t.port}`;
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve({ ok: false, detail: `dial tcp ${addr}: aborted` });
      return;
    }
    const sock = net.connect({ host: t.host, port: t.port });
    const finish = (r: ProbeResult): void => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, detail: `dial tcp ${addr}: aborted` });
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => finish({ ok: true, detail: `dial tcp ${addr}: connected` }));
    sock.once('error', (err) => finish({ ok: false, detail: `dial tcp ${addr}: ${short(errText(err))}` }));
  });
}
