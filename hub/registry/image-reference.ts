/**
 * Docker image references: `[registry/]repository[:tag][@digest]`. The first path component
 * names a registry only when it looks like a host (has a `.` or `:`, or is `localhost`), as
 * the Docker CLI decides; otherwise the image lives on Docker Hub, which the hub does not ask.
 */
export interface ImageReference {
  /** `host[:port]`, or undefined for a Docker Hub short name (`busybox`, `library/nginx`). */
  registry: string | undefined;
  repository: string;
  /** A tag (`latest` when none was written) or a digest (`sha256:…`). */
  reference: string;
  isDigest: boolean;
}

export function parseImageReference(image: string): ImageReference | undefined {
  let rest = image.trim();
  if (rest === '' || /\s/.test(rest)) return undefined;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) return undefined;
  }
  const slash = rest.indexOf('/');
  let registry: string | undefined;
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  if (rest === '' || !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(rest)) return undefined;
  return { registry, repository: rest, reference: digest ?? tag ?? 'latest', isDigest: digest !== undefined };
}

/** Loopback registries speak plain HTTP (Docker allows 127.0.0.0/8 insecure by default). */
export function isLoopbackRegistry(host: string): boolean {
  const h = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : (host.split(':')[0] ?? '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
