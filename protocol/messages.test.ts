import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { COMPRESS_MIN_BYTES, decodeMessage, DesiredSetMessageSchema, encodeMessage, isDeflated, MAX_MESSAGE_BYTES, payloadText } from './messages.js';
import { ObservedSetMessageSchema } from './reports.js';

const pod = (i: number) => ({
  name: `web-${i}`,
  uid: `uid-${i}`,
  deployment: 'web',
  spec: { containers: [{ name: 'main', image: 'registry.local/web:1.2.3', command: ['serve', '--port', '8080'] }] },
});
const set = (n: number) => ({ node: 'pi-1', generation: 7, pods: Array.from({ length: n }, (_, i) => pod(i)), at: '2026-11-27T00:00:00.000Z' });

describe('payload encodings', () => {
  it('deflates a large message for a reader of deflate, and it decodes to the same value', () => {
    const plain = encodeMessage(set(10));
    const deflated = encodeMessage(set(10), 'deflate');
    expect(isDeflated(plain)).toBe(false);
    expect(isDeflated(deflated)).toBe(true);
    expect(deflated.length).toBeLessThan(plain.length / 3);
    const a = decodeMessage(DesiredSetMessageSchema, plain);
    const b = decodeMessage(DesiredSetMessageSchema, deflated);
    expect(b).toEqual(a);
    expect(b.ok && b.value.pods.length).toBe(10);
  });

  it('keeps small messages and readers without deflate on plain JSON', () => {
    const small = set(1);
    expect(JSON.stringify(small).length).toBeLessThan(COMPRESS_MIN_BYTES);
    expect(encodeMessage(small, 'deflate').toString()).toBe(JSON.stringify(small));
    expect(encodeMessage(set(10)).toString()).toBe(JSON.stringify(set(10)));
  });

  it('never mistakes JSON for a zlib header, whatever the window size', () => {
    for (const text of ['{}', '{"node":"x"}', '[1]', 'not json']) expect(isDeflated(Buffer.from(text))).toBe(false);
    for (const windowBits of [9, 12, 13, 15]) expect(isDeflated(deflateSync(Buffer.from('{"a":1}'), { windowBits }))).toBe(true);
    expect(isDeflated(Buffer.alloc(0))).toBe(false);
    expect(isDeflated(Buffer.from([0x78]))).toBe(false);
  });

  it('refuses a deflated payload that inflates beyond MAX_MESSAGE_BYTES (a zip bomb) without inflating it all', () => {
    const bomb = deflateSync(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20));
    expect(bomb.length).toBeLessThan(10_000);
    const r = decodeMessage(ObservedSetMessageSchema, bomb);
    expect(r).toEqual({ ok: false, error: `deflated payload inflates beyond ${MAX_MESSAGE_BYTES} bytes` });
  });

  it('names a corrupt deflate stream and a deflated non-JSON text as such', () => {
    const good = encodeMessage(set(10), 'deflate');
    const corrupt = Buffer.concat([good.subarray(0, 2), Buffer.from('garbage that is not deflate data')]);
    const r = payloadText(corrupt);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/^payload is not valid deflate data: /);
    const notJson = decodeMessage(DesiredSetMessageSchema, deflateSync(Buffer.from('hello')));
    expect(!notJson.ok && notJson.error).toMatch(/^payload is not JSON/);
    // Schema errors still name the field, inflated or not.
    const bad = decodeMessage(DesiredSetMessageSchema, encodeMessage({ ...set(10), generation: 'seven' }, 'deflate'));
    expect(!bad.ok && bad.error).toMatch(/^generation: /);
  });

  it('still refuses an oversized plain payload before parsing it', () => {
    const r = payloadText(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20));
    expect(r).toEqual({ ok: false, error: `payload of ${MAX_MESSAGE_BYTES + 1} bytes exceeds ${MAX_MESSAGE_BYTES}` });
  });
});
