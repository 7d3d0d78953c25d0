import { describe, expect, it } from 'vitest';
import type { NodeCondition } from '../../protocol/objects.js';
import { mockNodeObject } from '../scheduler/testing.js';
import { isNodeReady } from './node.js';

describe('isNodeReady', () => {
  it.each<[string, NodeCondition[], boolean]>([
    ['Ready True', [{ type: 'Ready', status: 'True' }], true],
    [
      'Ready True among others',
      [
        { type: 'DiskPressure', status: 'True' },
        { type: 'MemoryLimitUnsupported', status: 'False' },
        { type: 'Ready', status: 'True' },
      ],
      true,
    ],
    ['Ready False', [{ type: 'Ready', status: 'False', reason: 'NodeStatusUnknown' }], false],
    ['Ready Unknown', [{ type: 'Ready', status: 'Unknown' }], false],
    ['no Ready condition', [{ type: 'MemoryLimitUnsupported', status: 'False' }], false],
    ['no conditions', [], false],
  ])('%s → %s', (_name, conditions, want) => {
    const n = mockNodeObject('n');
    expect(isNodeReady({ ...n, status: { ...n.status, conditions } })).toBe(want);
  });
});
