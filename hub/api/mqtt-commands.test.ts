import { describe, expect, it } from 'vitest';
import { CommandRequestSchema, type CommandRequest } from '../../protocol/api.js';
import { commandWrites } from './mqtt-commands.js';

const req = (op: string, args: object): CommandRequest => CommandRequestSchema.parse({ id: 'r1', op, args });

describe('commandWrites (the write gate and the durability barrier apply to these)', () => {
  it.each([
    ['get', { kind: 'deployments' }, false],
    ['logs', { pod: 'web-1' }, false],
    ['rollout', { action: 'status', name: 'web' }, false],
    ['rollout', { action: 'history', name: 'web' }, false],
    ['rollout', { action: 'undo', name: 'web' }, true],
    ['rollout', { action: 'restart', name: 'web' }, true],
    ['scale', { name: 'web', replicas: 2 }, true],
    ['delete', { kind: 'deployments', name: 'web' }, true],
  ])('%s %j → %s', (op, args, writes) => {
    expect(commandWrites(req(op, args))).toBe(writes);
  });
});
