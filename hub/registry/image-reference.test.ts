import { describe, expect, it } from 'vitest';
import { isLoopbackRegistry, parseImageReference } from './image-reference.js';

describe('parseImageReference', () => {
  const cases: Array<[string, ReturnType<typeof parseImageReference>]> = [
    ['busybox', { registry: undefined, repository: 'busybox', reference: 'latest', isDigest: false }],
    ['library/nginx:1.25', { registry: undefined, repository: 'library/nginx', reference: '1.25', isDigest: false }],
    ['127.0.0.1:5000/orchard/app:v1', { registry: '127.0.0.1:5000', repository: 'orchard/app', reference: 'v1', isDigest: false }],
    ['localhost/app', { registry: 'localhost', repository: 'app', reference: 'latest', isDigest: false }],
    ['ghcr.io/org/app@sha256:abcdef0123', { registry: 'ghcr.io', repository: 'org/app', reference: 'sha256:abcdef0123', isDigest: true }],
    ['reg.example:443/a/b:tag@sha256:00ff', { registry: 'reg.example:443', repository: 'a/b', reference: 'sha256:00ff', isDigest: true }],
    ['orchard-test/busybox:1', { registry: undefined, repository: 'orchard-test/busybox', reference: '1', isDigest: false }],
    ['', undefined],
    ['Bad/Upper', undefined],
    ['a b', undefined],
  ];
  it.each(cases)('%s', (input, want) => expect(parseImageReference(input)).toEqual(want));

  it.each([
    ['127.0.0.1:5000', true],
    ['localhost:5000', true],
    ['[::1]:5000', true],
    ['registry.example.com', false],
    ['10.0.0.1:5000', false],
  ] as Array<[string, boolean]>)('loopback %s: %s', (host, want) => expect(isLoopbackRegistry(host)).toBe(want));
});
