import { describe, expect, it } from 'vitest';
import { parseTopic, topics, userClientId, userClientTokenId } from './topics.js';
import { decodeMessage, DesiredSetMessageSchema } from './messages.js';
import { parseJoinToken } from './api.js';

describe('topics', () => {
  it('builds and parses every node channel', () => {
    for (const ch of ['status', 'usage', 'observed', 'presence', 'desired', 'stream-up', 'stream-down'] as const) {
      expect(parseTopic(topics.node('pi-1', ch))).toEqual({ type: 'node', node: 'pi-1', channel: ch });
    }
    expect(topics.nodeDesired('pi-1')).toBe('orchard/v1/nodes/pi-1/desired');
    expect(parseTopic(topics.command('cli-7'))).toEqual({ type: 'command', clientId: 'cli-7' });
    expect(parseTopic(topics.reply('cli-7'))).toEqual({ type: 'reply', clientId: 'cli-7' });
    expect(parseTopic(topics.hubs())).toEqual({ type: 'hubs' });
    expect(parseTopic('orchard/v1/hubs/x')).toBeUndefined();
  });
  it.each([
    'orchard/v1/nodes/PI/status',
    'orchard/v1/nodes/pi/unknown',
    'orchard/v2/nodes/pi/status',
    'orchard/v1/nodes/pi/status/extra',
    'orchard/v1/nodes/+/status',
    '#',
    'orchard/v1/commands/',
    'orchard/v1/commands/a b',
    `orchard/v1/${'x/'.repeat(200)}`,
    'x'.repeat(300),
  ])('refuses %j', (t) => expect(parseTopic(t)).toBeUndefined());
});

describe('user client ids', () => {
  it('ties a user client id to its API token id, in a namespace node names cannot enter', () => {
    expect(userClientId('0123456789ab')).toBe('u.0123456789ab');
    expect(userClientTokenId(userClientId('0123456789ab'))).toBe('0123456789ab');
    expect(userClientTokenId(userClientId('0123456789ab', 'cli-7.x_y'))).toBe('0123456789ab');
    expect(parseTopic(topics.command(userClientId('0123456789ab', 'a')))).toEqual({ type: 'command', clientId: 'u.0123456789ab.a' });
  });
  it.each([
    'u-0123456789ab',
    'u-0123456789ab-cli',
    'u.0123456789a',
    'u.0123456789abc',
    'u.0123456789AB',
    'u.0123456789ab.',
    'u.0123456789ab-x',
    `u.0123456789ab.${'x'.repeat(120)}`,
    'node-1',
    '',
  ])('is not a user client id: %j', (id) => expect(userClientTokenId(id)).toBeUndefined());
});

describe('message decoding', () => {
  it('never throws on garbage and says why', () => {
    for (const p of ['', 'null', '{', '[]', '{"node":"pi","generation":-1,"pods":[],"at":"x"}', Buffer.from([0xff, 0xfe])]) {
      const r = decodeMessage(DesiredSetMessageSchema, p);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.length).toBeGreaterThan(3);
    }
  });
  it('names the failing field', () => {
    const r = decodeMessage(DesiredSetMessageSchema, JSON.stringify({ node: 'pi', generation: 'one', pods: [], at: 'now' }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/^generation:/);
  });
});

describe('join tokens', () => {
  it('parses K10<fingerprint>::<id>.<secret>', () => {
    const fp = 'a'.repeat(64);
    expect(parseJoinToken(`K10${fp}::abc123.${'s'.repeat(32)}`)).toEqual({ caFingerprint: fp, id: 'abc123', secret: 's'.repeat(32) });
    expect(parseJoinToken('K10abc::x.y')).toBeUndefined();
    expect(parseJoinToken('')).toBeUndefined();
  });
});
