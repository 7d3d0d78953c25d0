import https from 'node:https';
import { API_VERSION } from '../../../protocol/manifest.js';
import { MAX_APPLY_DOCUMENTS } from '../../../protocol/api.js';
import { HOLLOW_IMAGE } from './hollow-fleet.js';

/**
 * The bench workload: `total` pods as Deployments of at most `perDeployment` replicas, small
 * requests (so capacity never binds) and no host ports (so the scheduler's work is the usual
 * filter → score → pick), applied through the real HTTPS API in chunks of the API's maximum
 * documents per apply.
 */
export function benchDeployments(total: number, perDeployment: number): object[] {
  const out: object[] = [];
  for (let i = 0, left = total; left > 0; i++) {
    const replicas = Math.min(perDeployment, left);
    left -= replicas;
    const name = `bench-${i}`;
    out.push({
      apiVersion: API_VERSION,
      kind: 'Deployment',
      metadata: { name, labels: { app: name } },
      spec: {
        replicas,
        template: {
          metadata: { labels: { app: name } },
          spec: {
            containers: [{ name: 'app', image: HOLLOW_IMAGE, imagePullPolicy: 'IfNotPresent', resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
          },
        },
      },
    });
  }
  return out;
}

/**
 * Applies every document; returns how many requests had to be retried. Apply is idempotent
 * (a repeat says "unchanged"), so a request lost to a reset or a timeout of a saturated hub is
 * simply sent again, a few times, with a pause.
 */
export async function applyAll(
  apiUrl: string,
  token: string,
  caPem: string,
  docs: readonly object[],
  attempts = 5,
): Promise<{ retries: number; unconfirmed: number }> {
  let retries = 0;
  // Requests the hub applied but whose durability barrier (etcd) timed out: 504 ERR_TIMEOUT says
  // "it is applied on this hub and reaches etcd if etcd answers before this hub stops leading". Sending them again would
  // only queue behind the same backlog; the deploy phase then measures when pods really run.
  let unconfirmed = 0;
  for (let i = 0; i < docs.length; i += MAX_APPLY_DOCUMENTS) {
    const body = JSON.stringify(docs.slice(i, i + MAX_APPLY_DOCUMENTS));
    for (let attempt = 1; ; attempt++) {
      let failure: string;
      try {
        const r = await apiRequest('POST', `${apiUrl}/api/v1/apply`, token, caPem, body);
        if (r.status === 200) break;
        if (r.status === 504 && r.text.includes('ERR_TIMEOUT') && r.text.includes('it is applied on this hub')) {
          unconfirmed++;
          break;
        }
        failure = `HTTP ${r.status}: ${r.text.slice(0, 300)}`;
        if (r.status < 500) throw new Error(`apply failed (${failure})`);
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('apply failed')) throw err;
        failure = err instanceof Error ? err.message : String(err);
      }
      if (attempt >= attempts) throw new Error(`apply failed after ${attempts} attempts: ${failure}`);
      retries++;
      await new Promise((r) => setTimeout(r, 2000 * attempt));
    }
  }
  return { retries, unconfirmed };
}

/** One HTTPS call to the hub's API with the admin token; the body, if any, is JSON. */
export function apiRequest(method: 'GET' | 'POST', url: string, token: string, ca: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca,
        timeout: 120_000,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('apply request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}
