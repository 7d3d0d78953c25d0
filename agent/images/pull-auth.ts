import type { DesiredPod, DesiredSetMessage, ObservedPod } from '../../protocol/messages.js';
import type { ImagePullProgress } from '../../protocol/objects.js';
import type { RegistryAuth } from '../runtime/runtime.js';

/**
 * Pure helpers between the desired set and image pulls: registry logins from the Secrets a
 * pod names in `imagePullSecrets` (keys `username`, `password`, `server`, base64 as Secret data
 * always is), and pull progress attached to the observed pods waiting for it.
 */

export type DesiredSecrets = NonNullable<DesiredSetMessage['secrets']>;

/** The registry host an image reference names (`127.0.0.1:5000`, `ghcr.io`, `localhost`), as Docker decides it; undefined when it names none. */
export function namedRegistryHost(image: string): string | undefined {
  const first = image.split('/')[0] ?? '';
  return image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : undefined;
}

/** The registry host of an image reference (`docker.io` when none is named). */
export function registryHost(image: string): string {
  return namedRegistryHost(image) ?? 'docker.io';
}

function decode(v: string | undefined): string | undefined {
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

/** Docker Hub's login names (`docker login` writes https://index.docker.io/v1/) all mean docker.io. */
const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `https://Reg.Example:5000/v2/` → `reg.example:5000`; Docker Hub's aliases → `docker.io`. */
export function normalizeRegistry(server: string): string {
  const host = server
    .trim()
    .replace(/^https?:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
  return DOCKER_HUB.has(host) ? 'docker.io' : host;
}

/**
 * The first named Secret whose `server` is the image's registry. A Secret without `server` is
 * never used: its login would go to whatever registry an image names (the hub refuses such a
 * Secret at apply time; this guards Secrets stored before that check, or sent by an old hub).
 */
export function pullAuth(image: string, names: ReadonlyArray<{ name: string }>, secrets: DesiredSecrets | undefined): RegistryAuth | undefined {
  if (secrets === undefined) return undefined;
  const host = registryHost(image);
  for (const { name } of names) {
    const data = secrets[name]?.data;
    if (data === undefined) continue;
    const username = decode(data['username']);
    const password = decode(data['password']);
    const server = decode(data['server']);
    if (username === undefined || password === undefined || server === undefined) continue;
    const registry = normalizeRegistry(server);
    if (registry === '' || registry !== normalizeRegistry(host)) continue;
    return { username, password, server: registry };
  }
  return undefined;
}

/** Adds `pull` to each pod whose containers wait for an image being pulled (first such image). */
export function withPullProgress(desired: readonly DesiredPod[], pods: ObservedPod[], pulls: ReadonlyMap<string, ImagePullProgress>): ObservedPod[] {
  if (pulls.size === 0) return pods;
  const byUid = new Map(desired.map((p) => [p.uid, p]));
  return pods.map((o) => {
    const d = byUid.get(o.uid);
    if (d === undefined) return o;
    const waiting = new Set(o.containers.filter((c) => c.state === 'waiting' && c.containerId === undefined).map((c) => c.name));
    const image = d.spec.containers.find((c) => waiting.has(c.name) && pulls.has(c.image))?.image;
    const p = image === undefined ? undefined : pulls.get(image);
    return p === undefined ? o : { ...o, pull: p };
  });
}
