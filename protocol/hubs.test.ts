import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from './messages.js';
import { HubListMessageSchema } from './hubs.js';

describe('hub list message', () => {
  const ok = {
    leader: 'a',
    epoch: 7,
    hubs: [
      { id: 'a', api: 'https://10.0.0.1:8443', mqtt: 'mqtts://10.0.0.1:8883' },
      { id: 'b', api: 'https://[fd00::2]:8443', mqtt: 'mqtts://hub-b.lan:8883' },
    ],
  };
  it('round-trips', () => {
    expect(decodeMessage(HubListMessageSchema, encodeMessage(ok))).toEqual({ ok: true, value: ok });
  });
  it.each([
    ['an API address with a path', { ...ok, hubs: [{ ...ok.hubs[0], api: 'https://a:1/x' }] }, 'hubs.0.api'],
    ['an MQTT address without a port', { ...ok, hubs: [{ ...ok.hubs[0], mqtt: 'mqtts://a' }] }, 'hubs.0.mqtt'],
    ['no hubs', { ...ok, hubs: [] }, 'hubs'],
    ['an unknown field', { ...ok, extra: 1 }, '(root)'],
  ])('refuses %s, naming the field', (_what, msg, path) => {
    const r = decodeMessage(HubListMessageSchema, encodeMessage(msg));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(path);
  });
});
