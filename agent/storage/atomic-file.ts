import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `data` to `file` so a crash or power cut leaves either the old or the new content, never
 * a torn file: a temporary file (mode 0600) is written and fsync'd, renamed over `file`, and the
 * directory fsync'd so the rename itself survives a power cut (SD cards). The agent's on-disk
 * state (desired.json, services.json, the sealed secrets) goes through here.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: { syncDir?: boolean } = {}): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  if (opts.syncDir === false) return;
  const dir = await fsp.open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
