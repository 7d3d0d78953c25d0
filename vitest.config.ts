import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Native addons built for another Node ABI (scripts/test.sh runs the unit and integration tiers on
// Node 24 too, while node_modules holds better-sqlite3 built for the Node that ran `npm ci`):
// ORCHARD_NATIVE_MODULES names a node_modules with a better-sqlite3 built for this Node
// (ensure_native_for in scripts/lib/common.sh).
const native = process.env.ORCHARD_NATIVE_MODULES;
const nativeAlias = native ? { resolve: { alias: { 'better-sqlite3': join(native, 'better-sqlite3') } } } : {};

export default defineConfig({
  test: {
    projects: [
      {
        ...nativeAlias,
        test: {
          name: 'unit',
          include: ['protocol/**/*.test.ts', 'hub/**/*.test.ts', 'agent/**/*.test.ts', 'cli/**/*.test.ts', 'scripts/**/*.test.ts'],
          testTimeout: 10_000,
        },
      },
      {
        ...nativeAlias,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        ...nativeAlias,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // e2e suites share one Docker Engine; run files one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
