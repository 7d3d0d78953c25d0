import type { NodeStatusMessage } from '../../protocol/messages.js';

export interface MockNodeStatusOptions {
  labels?: Record<string, string>;
  arch?: 'amd64' | 'arm64' | 'arm';
  cores?: number;
  memoryBytes?: number;
  memoryLimit?: boolean;
  addresses?: string[];
  at?: string;
  conditions?: NodeStatusMessage['conditions'];
}

/** A valid status report of `node`, as its agent publishes it: a 4-core arm64 with 4 GiB unless told otherwise. */
export function mockNodeStatus(node: string, o: MockNodeStatusOptions = {}): NodeStatusMessage {
  return {
    node,
    labels: o.labels ?? {},
    bootId: 'b1',
    at: o.at ?? new Date().toISOString(),
    info: {
      arch: o.arch ?? 'arm64',
      os: 'linux',
      cpu: { cores: o.cores ?? 4 },
      memoryBytes: o.memoryBytes ?? 4 * 1024 ** 3,
      engine: { name: 'docker', version: '20.10', memoryLimit: o.memoryLimit ?? true, cpuLimit: true },
      agentVersion: '0.1.0',
      addresses: o.addresses ?? ['127.0.0.1'],
    },
    ...(o.conditions !== undefined ? { conditions: o.conditions } : {}),
  };
}
