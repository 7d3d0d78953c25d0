import { afterAll, beforeAll } from 'vitest';
import { EtcdClient } from '../../hub/store/etcd/etcd-client.js';
import { EtcdCluster } from './etcd.js';

/**
 * Real etcd members and one client of them for the tests of a file or describe block: started in
 * `beforeAll`, closed in `afterAll` (client first). Read `etcd` and `client` inside tests and
 * hooks only: they exist once the `beforeAll` has run. Kept apart from etcd.ts, which the
 * benchmarks import outside vitest.
 */
export interface EtcdSuiteOptions {
  /** Members; default 1. */
  size?: 1 | 3;
  /** The client's per-call timeout; default the client's own (5 s). */
  clientTimeoutMs?: number;
  /** Timeout of the `beforeAll` that starts the members; default 30 s. */
  startTimeoutMs?: number;
}

export interface EtcdSuite {
  readonly etcd: EtcdCluster;
  readonly client: EtcdClient;
}

export function useEtcdCluster(opts: EtcdSuiteOptions = {}): EtcdSuite {
  let etcd: EtcdCluster | undefined;
  let client: EtcdClient | undefined;
  beforeAll(async () => {
    etcd = await EtcdCluster.start(opts.size ?? 1);
    client = new EtcdClient({ endpoints: etcd.endpoints, ...(opts.clientTimeoutMs !== undefined ? { timeoutMs: opts.clientTimeoutMs } : {}) });
  }, opts.startTimeoutMs ?? 30_000);
  afterAll(() => {
    client?.close();
    etcd?.close();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('useEtcdCluster: etcd starts in beforeAll; read it inside a test or hook');
    return v;
  };
  return {
    get etcd() {
      return started(etcd);
    },
    get client() {
      return started(client);
    },
  };
}
