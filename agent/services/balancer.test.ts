import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../protocol/clock.js';
import { Balancer, type Endpoint } from './balancer.js';
import { pick, type TrafficPolicy } from './endpoint-picker.js';

const endpoints = fc.uniqueArray(
  fc
    .record({ n: fc.integer({ min: 1, max: 60 }), local: fc.boolean() })
    .map(({ n, local }): Endpoint => ({ id: `10.0.0.${n}:80`, host: `10.0.0.${n}`, port: 80, local })),
  { selector: (e) => e.id, maxLength: 7 },
);
const policy = fc.constantFrom<TrafficPolicy>('preferLocal', 'local', 'cluster');

describe('Balancer.order without ejections or affinity (the per-connection fast path)', () => {
  it('gives exactly what the pure picker gives, cursor included, over sequences of orders and endpoint changes', () => {
    fc.assert(
      fc.property(policy, fc.array(fc.tuple(endpoints, fc.integer({ min: 0, max: 9 })), { minLength: 1, maxLength: 6 }), (pol, steps) => {
        const b = new Balancer({ policy: pol, clock: systemClock });
        let cursor = 0;
        for (const [list, orders] of steps) {
          b.setEndpoints(list);
          for (let i = 0; i < orders; i++) {
            const want = pick({ endpoints: list, policy: pol, client: '', now: 0, ejected: new Map(), sticky: new Map(), cursor });
            cursor = want.cursor;
            expect(b.order('10.1.1.1').map((e) => e.id)).toEqual(want.order);
          }
        }
      }),
    );
  });

  it('an ejection takes the picker path (the ejected endpoint goes last) and a success brings the fast path back', () => {
    const list: Endpoint[] = ['a', 'b', 'c'].map((h) => ({ id: `${h}:1`, host: h, port: 1, local: true }));
    const b = new Balancer({ policy: 'cluster', clock: systemClock });
    b.setEndpoints(list);
    expect(b.order('x').map((e) => e.id)).toEqual(['a:1', 'b:1', 'c:1']);
    b.failed(list[1]!);
    expect(b.order('x').map((e) => e.id)).toEqual(['c:1', 'a:1', 'b:1']);
    b.succeeded('x', list[1]!);
    // Cursor 2: all three again, rotated by 2.
    expect(b.order('x').map((e) => e.id)).toEqual(['c:1', 'a:1', 'b:1']);
    expect(b.order('x').map((e) => e.id)).toEqual(['a:1', 'b:1', 'c:1']);
  });
});
