import type { ChildProcess } from 'node:child_process';

/**
 * Request/response over a child process's IPC channel (the bench's only control path to the
 * hub and worker processes). Each request carries an id; a reply that never comes is a
 * timeout, never a hang — the hub may be busy, killed or restarting.
 */

export interface RpcRequest {
  rpc: 'req';
  id: number;
  method: string;
  params: unknown;
}
export type RpcReply = { rpc: 'res'; id: number; ok: true; result: unknown } | { rpc: 'res'; id: number; ok: false; error: string };
/** An unsolicited message from a child (e.g. "ready"). */
export interface RpcEvent {
  rpc: 'event';
  name: string;
  data: unknown;
}

export class RpcClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly eventWaiters = new Map<string, Array<(data: unknown) => void>>();
  private exited = false;

  constructor(
    readonly child: ChildProcess,
    private readonly label: string,
  ) {
    child.on('message', (m: unknown) => this.onMessage(m));
    child.on('exit', () => {
      this.exited = true;
      for (const [id, w] of this.waiting) {
        clearTimeout(w.timer);
        w.reject(new Error(`${label} exited before answering request ${id}`));
      }
      this.waiting.clear();
    });
  }

  call<T>(method: string, params: unknown = {}, timeoutMs = 30_000): Promise<T> {
    if (this.exited || !this.child.connected) return Promise.reject(new Error(`${this.label} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.label}: ${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const req: RpcRequest = { rpc: 'req', id, method, params };
      this.child.send(req, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(err);
      });
    });
  }

  /** Resolves with the data of the next event `name` (or rejects on timeout / exit). */
  event<T>(name: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: no "${name}" within ${timeoutMs} ms`)), timeoutMs);
      const list = this.eventWaiters.get(name) ?? [];
      list.push((d) => {
        clearTimeout(timer);
        resolve(d as T);
      });
      this.eventWaiters.set(name, list);
      this.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited (${signal ?? code}) while waiting for "${name}"`));
      });
    });
  }

  private onMessage(m: unknown): void {
    if (typeof m !== 'object' || m === null) return;
    const msg = m as RpcReply | RpcEvent;
    if (msg.rpc === 'event') {
      const list = this.eventWaiters.get(msg.name) ?? [];
      this.eventWaiters.delete(msg.name);
      for (const w of list) w(msg.data);
      return;
    }
    if (msg.rpc !== 'res') return;
    const w = this.waiting.get(msg.id);
    if (!w) return;
    this.waiting.delete(msg.id);
    clearTimeout(w.timer);
    if (msg.ok) w.resolve(msg.result);
    else w.reject(new Error(`${this.label}: ${msg.error}`));
  }
}

/** Child side: answers requests with `handlers[method](params)`; exits when the parent goes away. */
export function serveRpc(handlers: Record<string, (params: unknown) => unknown>): void {
  process.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || (m as RpcRequest).rpc !== 'req') return;
    const req = m as RpcRequest;
    const reply = (r: RpcReply): void => {
      if (process.connected) process.send?.(r);
    };
    const h = handlers[req.method];
    if (!h) return reply({ rpc: 'res', id: req.id, ok: false, error: `unknown method ${req.method}` });
    Promise.resolve()
      .then(() => h(req.params))
      .then(
        (result) => reply({ rpc: 'res', id: req.id, ok: true, result }),
        (err: unknown) => reply({ rpc: 'res', id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  // An orphaned bench child must not outlive the bench.
  process.on('disconnect', () => process.exit(0));
}

export function emitEvent(name: string, data: unknown): void {
  const ev: RpcEvent = { rpc: 'event', name, data };
  process.send?.(ev);
}
