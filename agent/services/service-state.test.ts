import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SERVICES_FILE, ServiceState } from './service-state.js';
import { endpoint, svcIndex, svcMsg } from './test-services.js';

const index = svcIndex;

const names = (s: ServiceState): string[] => s.active().services.map((m) => m.service);

describe('ServiceState', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orchard-svc-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a service is active only when the index lists it AND its message arrived', () => {
    const s = new ServiceState(dir);
    expect(s.onService('web', svcMsg('web', 5))).toBe(true);
    expect(names(s)).toEqual([]); // no index yet: held, not used
    expect(s.onIndex(index(6, ['web', 'db']))).toBe(true);
    expect(names(s)).toEqual(['web']); // db listed, no message yet
    s.onService('db', svcMsg('db', 6, { ordinal: 3 }));
    expect(names(s)).toEqual(['db', 'web']);
  });

  it('takes a lower generation too (a hub restored from an older store is the authority); a newer generation with the same content is no change', () => {
    const s = new ServiceState(dir);
    s.onIndex(index(10, ['web'], { n1: '10.0.0.1' }));
    s.onService('web', svcMsg('web', 10, { ordinal: 7 }));
    expect(s.onService('web', svcMsg('web', 11, { ordinal: 7 }))).toBe(false); // same content, new stamp
    expect(s.onIndex(index(12, ['web'], { n1: '10.0.0.1' }))).toBe(false);
    expect(s.onIndex(index(13, ['web'], { n1: '10.0.0.9' }))).toBe(true); // peers are content
    expect(s.active().peers).toEqual({ n1: '10.0.0.9' });
    expect(s.onService('web', svcMsg('web', 14, { ordinal: 7, trafficPolicy: 'local' }))).toBe(true);
    // The hub restarts on last week's backup (revision 9): its republished state wins.
    s.onService('old', svcMsg('old', 14));
    expect(s.onService('web', svcMsg('web', 9, { ordinal: 8 }))).toBe(true);
    expect(s.onIndex(index(9, ['web'], { n1: '10.0.0.1' }))).toBe(true);
    expect(s.active().services.map((m) => [m.service, m.ordinal])).toEqual([['web', 8]]);
    expect(s.active().peers).toEqual({ n1: '10.0.0.1' });
    // A backwards index drops every message it does not list, whatever its generation.
    expect(s.onIndex(index(10, ['web', 'old'], { n1: '10.0.0.1' }))).toBe(true);
    expect(names(s)).toEqual(['web']);
  });

  it('an empty retained payload (undefined) deletes the service; a message on the wrong topic is ignored', () => {
    const s = new ServiceState(dir);
    s.onIndex(index(1, ['web']));
    s.onService('web', svcMsg('web', 1));
    expect(s.onService('web', undefined)).toBe(true);
    expect(names(s)).toEqual([]);
    expect(s.onService('web', undefined)).toBe(false);
    expect(s.onService('web', svcMsg('other', 2))).toBe(false);
    expect(names(s)).toEqual([]);
  });

  it('drops held messages the index no longer lists when they are older than it (deleted while offline), keeps newer ones', () => {
    const s = new ServiceState(dir);
    s.onService('gone', svcMsg('gone', 3));
    s.onService('fresh', svcMsg('fresh', 9));
    expect(s.onIndex(index(5, ['other']))).toBe(true);
    s.onIndex(index(10, ['fresh'])); // fresh was merely early
    expect(names(s)).toEqual(['fresh']);
    s.onIndex(index(11, ['fresh', 'gone']));
    expect(names(s)).toEqual(['fresh']); // gone's message was dropped, not resurrected
  });

  it('round trip through services.json; no write when nothing (or only stamps) changed', async () => {
    const s = new ServiceState(dir);
    expect(await s.save()).toBe(false); // nothing known: no file
    s.onIndex(index(4, ['web'], { n1: '10.0.0.1' }));
    const endpoints = [endpoint('u', 'n1')];
    s.onService('web', svcMsg('web', 4, { ordinal: 9, endpoints }));
    expect(await s.save()).toBe(true);
    const before = await stat(join(dir, SERVICES_FILE));
    expect(await s.save()).toBe(false);
    s.onService('web', svcMsg('web', 5, { ordinal: 9, endpoints }));
    s.onIndex(index(5, ['web'], { n1: '10.0.0.1' }));
    expect(await s.save()).toBe(false); // new generations, same content
    expect(s.writes).toBe(1);
    const after = await stat(join(dir, SERVICES_FILE));
    expect([after.ino, after.mtimeMs, after.size]).toEqual([before.ino, before.mtimeMs, before.size]);

    const t = new ServiceState(dir);
    expect(await t.load()).toBe(true);
    // As written: the generation-4 stamps (content did not change since), same services and peers.
    expect(t.active()).toEqual({ services: [svcMsg('web', 4, { ordinal: 9, endpoints })], peers: { n1: '10.0.0.1' } });
    expect(await t.save()).toBe(false); // loaded content is the baseline: a restart costs no write
    t.onService('web', undefined);
    expect(await t.save()).toBe(true);
    expect(JSON.parse(await readFile(join(dir, SERVICES_FILE), 'utf8'))).toMatchObject({ services: [], index: { services: ['web'] } });
  });

  it('an unreadable or invalid services.json is ignored (logged), not fatal', async () => {
    await writeFile(join(dir, SERVICES_FILE), '{"services":[{"service":"x"}]}');
    const warnings: string[] = [];
    const s = new ServiceState(dir, { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} });
    expect(await s.load()).toBe(false);
    expect(warnings).toEqual(['ignoring invalid services cache']);
    expect(names(s)).toEqual([]);
  });
});
