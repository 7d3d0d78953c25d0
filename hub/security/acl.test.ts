import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { topics } from '../../protocol/topics.js';
import { MAX_RETAINED_BYTES, canPublish, canReceive, canSubscribe, mayRetain } from './acl.js';
import type { Principal } from './acl.js';

const nodeA: Principal = { kind: 'node', node: 'node-a' };
const user: Principal = { kind: 'user', clientId: 'cli-1', role: 'operator' };
const hub: Principal = { kind: 'hub' };

const deep = ['orchard', 'v1', ...Array.from({ length: 198 }, () => 'x')].join('/'); // 200 levels
const long = `orchard/v1/commands/${'a'.repeat(300)}`;
const longNode = `orchard/v1/nodes/${'n'.repeat(250)}/status`;

describe('canPublish', () => {
  it.each<[string, Principal, string, boolean]>([
    ['node: own status', nodeA, topics.nodeStatus('node-a'), true],
    ['node: own usage', nodeA, topics.nodeUsage('node-a'), true],
    ['node: own observed', nodeA, topics.nodeObserved('node-a'), true],
    ['node: own presence', nodeA, topics.nodePresence('node-a'), true],
    ['node: own desired', nodeA, topics.nodeDesired('node-a'), false],
    ['node: own stream output', nodeA, topics.nodeStreamUp('node-a'), true],
    ["node: another node's stream output", nodeA, topics.nodeStreamUp('node-b'), false],
    ['node: own stream control (only the hub opens streams)', nodeA, topics.nodeStreamDown('node-a'), false],
    ['user: stream control', user, topics.nodeStreamDown('node-a'), false],
    ['user: stream output', user, topics.nodeStreamUp('node-a'), false],
    ["node: another node's status", nodeA, topics.nodeStatus('node-b'), false],
    ["node: another node's desired", nodeA, topics.nodeDesired('node-b'), false],
    ['node: a command', nodeA, topics.command('node-a'), false],
    ['node: a reply', nodeA, topics.reply('node-a'), false],
    ['node: wildcard', nodeA, 'orchard/v1/nodes/+/status', false],
    ['node: $SYS', nodeA, '$SYS/broker/x', false],
    ['node: foreign topic', nodeA, 'foo/bar', false],
    ['node: 200 levels', nodeA, deep, false],
    ['node: overlong', nodeA, longNode, false],
    ['node: a service topic', nodeA, topics.service('web'), false],
    ['node: the service index', nodeA, topics.serviceIndex(), false],
    ['node: the hub list', nodeA, topics.hubs(), false],
    ['user: the hub list', user, topics.hubs(), false],
    ['user: a service topic', user, topics.service('web'), false],
    ['user: own command', user, topics.command('cli-1'), true],
    ["user: another's command", user, topics.command('cli-2'), false],
    ['user: own reply', user, topics.reply('cli-1'), false],
    ['user: a desired set', user, topics.nodeDesired('node-a'), false],
    ['user: a node status', user, topics.nodeStatus('node-a'), false],
    ['user: overlong', user, long, false],
    ['hub: desired', hub, topics.nodeDesired('node-b'), true],
    ['hub: reply', hub, topics.reply('cli-1'), true],
    ['hub: wildcard', hub, '#', false],
    ['hub: 200 levels', hub, deep, false],
    ['anyone: empty', user, '', false],
  ])('%s', (_name, p, topic, want) => {
    expect(canPublish(p, topic)).toBe(want);
  });
});

describe('canSubscribe', () => {
  it.each<[string, Principal, string, boolean]>([
    ['node: own desired', nodeA, topics.nodeDesired('node-a'), true],
    ["node: another node's desired", nodeA, topics.nodeDesired('node-b'), false],
    ['node: own stream control', nodeA, topics.nodeStreamDown('node-a'), true],
    ["node: another node's stream control", nodeA, topics.nodeStreamDown('node-b'), false],
    ["node: another node's stream output", nodeA, topics.nodeStreamUp('node-b'), false],
    ['user: stream output', user, topics.nodeStreamUp('node-a'), false],
    ['node: own status', nodeA, topics.nodeStatus('node-a'), false],
    ['node: #', nodeA, '#', false],
    ['node: +/desired', nodeA, 'orchard/v1/nodes/+/desired', false],
    ['node: own prefix #', nodeA, 'orchard/v1/nodes/node-a/#', false],
    ['node: $SYS/#', nodeA, '$SYS/#', false],
    ['node: a reply', nodeA, topics.reply('node-a'), false],
    ['node: 200 levels', nodeA, deep, false],
    ['node: overlong', nodeA, longNode, false],
    ['node: every service (services/+)', nodeA, topics.allServices(), true],
    ['node: one service', nodeA, topics.service('web'), true],
    ['node: the service index', nodeA, topics.serviceIndex(), true],
    ['node: services/#', nodeA, 'orchard/v1/services/#', false],
    ['node: services/+/x', nodeA, 'orchard/v1/services/+/x', false],
    ['user: services/+', user, topics.allServices(), false],
    ['user: one service', user, topics.service('web'), false],
    ['user: the service index', user, topics.serviceIndex(), false],
    ['node: the hub list (HA)', nodeA, topics.hubs(), true],
    ['user: the hub list (HA)', user, topics.hubs(), true],
    ['node: hubs/+', nodeA, 'orchard/v1/hubs/+', false],
    ['user: own reply', user, topics.reply('cli-1'), true],
    ["user: another's reply", user, topics.reply('cli-2'), false],
    ['user: replies/+', user, 'orchard/v1/replies/+', false],
    ['user: #', user, '#', false],
    ['user: a desired set', user, topics.nodeDesired('node-a'), false],
    ['user: own command', user, topics.command('cli-1'), false],
    ['user: overlong', user, long, false],
    ['hub: #', hub, '#', true],
    ['hub: all status', hub, topics.allNodes('status'), true],
    ['hub: 200 levels', hub, deep, false],
    ['hub: overlong', hub, long, false],
  ])('%s', (_name, p, filter, want) => {
    expect(canSubscribe(p, filter)).toBe(want);
  });

  it('canReceive follows canSubscribe for concrete topics', () => {
    expect(canReceive(nodeA, topics.nodeDesired('node-a'))).toBe(true);
    expect(canReceive(nodeA, topics.nodeDesired('node-b'))).toBe(false);
    expect(canReceive(user, topics.reply('cli-1'))).toBe(true);
    expect(canReceive(user, topics.reply('cli-2'))).toBe(false);
    expect(canReceive(nodeA, topics.service('web'))).toBe(true);
    expect(canReceive(nodeA, topics.serviceIndex())).toBe(true);
    expect(canReceive(user, topics.service('web'))).toBe(false);
  });
});

describe('properties', () => {
  const level = fc.stringMatching(/^[a-z0-9+#$-]{0,8}$/);
  const topicArb = fc.oneof(
    fc.array(level, { minLength: 1, maxLength: 10 }).map((l) => l.join('/')),
    fc.array(level, { minLength: 2, maxLength: 4 }).map((l) => `orchard/v1/${l.join('/')}`),
    fc
      .constantFrom('nodes', 'commands', 'replies', 'services')
      .chain((kind) =>
        fc
          .tuple(level, fc.constantFrom('status', 'desired', 'usage', 'x'))
          .map(([n, ch]) => (kind === 'nodes' ? `orchard/v1/nodes/${n}/${ch}` : `orchard/v1/${kind}/${n}`)),
      ),
  );

  it('a node can touch no topic of another node, and a user none but its own pair', () => {
    fc.assert(
      fc.property(topicArb, (t) => {
        if (canPublish(nodeA, t)) expect(t.startsWith('orchard/v1/nodes/node-a/')).toBe(true);
        if (canSubscribe(nodeA, t)) expect(t.startsWith('orchard/v1/nodes/node-a/') || t.startsWith('orchard/v1/service')).toBe(true);
        if (canPublish(user, t)) expect(t).toBe(topics.command('cli-1'));
        if (canSubscribe(user, t)) expect(t).toBe(topics.reply('cli-1'));
        if (t.includes('+') || t.includes('#')) {
          expect((canSubscribe(nodeA, t) && t !== topics.allServices()) || canSubscribe(user, t) || canPublish(hub, t)).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('mayRetain', () => {
  it.each([
    ['hub, any topic', hub, topics.nodeDesired('node-a'), 1_000_000, true],
    ['node, own presence', nodeA, topics.nodePresence('node-a'), 100, true],
    ['node, own status', nodeA, topics.nodeStatus('node-a'), MAX_RETAINED_BYTES, true],
    ['node, own status over the cap', nodeA, topics.nodeStatus('node-a'), MAX_RETAINED_BYTES + 1, false],
    ['node, own usage', nodeA, topics.nodeUsage('node-a'), 100, false],
    ['node, own observed', nodeA, topics.nodeObserved('node-a'), 100, false],
    ["node, another node's presence", nodeA, topics.nodePresence('node-b'), 100, false],
    ['user, own command topic', user, topics.command('cli-1'), 10, false],
    ['node, a service topic', nodeA, topics.service('web'), 10, false],
    ['node, the service index', nodeA, topics.serviceIndex(), 10, false],
    ['node, the hub list', nodeA, topics.hubs(), 10, false],
  ])('%s → %s', (_what, p, topic, bytes, ok) => {
    expect(mayRetain(p, topic, bytes)).toBe(ok);
  });
});
