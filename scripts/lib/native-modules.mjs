// Preloaded with `node --import` (NODE_OPTIONS) when the test tiers run on another Node than the
// one node_modules was built for (scripts/test.sh, Node 24): `import 'better-sqlite3'` then loads
// the copy built for this Node's ABI from $ORCHARD_NATIVE_MODULES (ensure_native_for in
// scripts/lib/common.sh), in this process and in every node process it spawns (hub children).
import { register } from 'node:module';

const dir = process.env.ORCHARD_NATIVE_MODULES;
if (dir) {
  const hook = `
    import { pathToFileURL } from 'node:url';
    import { join } from 'node:path';
    const target = pathToFileURL(join(${JSON.stringify(dir)}, 'better-sqlite3', 'lib', 'index.js')).href;
    export async function resolve(specifier, context, next) {
      return specifier === 'better-sqlite3' ? next(target, context) : next(specifier, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`);
}
