import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DesiredPodSchema } from '../../protocol/messages.js';
import type { ObservedPod } from '../../protocol/messages.js';
import { Reconciler } from '../reconciler.js';
import { DockerRuntime, withDefaultTag } from './docker-runtime.js';
import { runtimeContract } from './runtime-contract.js';
import { LABELS } from './runtime.js';

/**
 * The contract against the real local Docker Engine. Every container carries
 * `orchard.test-run=<runId>` and is removed afterwards. Skipped (with the reason printed) only
 * when no engine answers.
 */

const sh = promisify(execFile);
const IMAGE = 'orchard-test/busybox:1';
const runId = `t${randomBytes(4).toString('hex')}`;

async function engineUp(): Promise<boolean> {
  try {
    await sh('docker', ['version', '--format', '{{.Server.Version}}']);
    return true;
  } catch {
    return false;
  }
}

/** Same recipe as scripts/build-test-image.sh: a static busybox rootfs imported as an image. */
async function ensureTestImage(): Promise<void> {
  try {
    await sh('docker', ['image', 'inspect', IMAGE]);
    return;
  } catch {
    // build below
  }
  const dir = `/tmp/orchard-bb-${runId}`;
  const applets = ['sh', 'sleep', 'httpd', 'nc', 'wget', 'true', 'false', 'cat', 'echo'];
  await sh('bash', [
    '-c',
    `set -e; mkdir -p ${dir}/bin && cp /bin/busybox ${dir}/bin/ && cd ${dir}/bin && for a in ${applets.join(' ')}; do ln -sf busybox $a; done && tar -C ${dir} -c . | docker import - ${IMAGE}; rm -rf ${dir}`,
  ]);
}

async function removeRunContainers(): Promise<void> {
  const ids = new Set<string>();
  // Containers the contract made carry the run label; ones the reconciler made carry a per-run node name.
  for (const filter of [`label=orchard.test-run=${runId}`, `label=orchard.node=rec-${runId}`]) {
    const { stdout } = await sh('docker', ['ps', '-aq', '--filter', filter]);
    for (const id of stdout.split('\n')) if (id !== '') ids.add(id);
  }
  if (ids.size > 0) await sh('docker', ['rm', '-f', ...ids]);
}

const up = await engineUp();
if (!up) console.warn('docker-runtime.test: skipped because no Docker Engine answers `docker version`');

describe.skipIf(!up)('DockerRuntime (real engine)', () => {
  runtimeContract('docker', async () => {
    await ensureTestImage();
    return {
      runtime: new DockerRuntime(),
      image: IMAGE,
      // Loopback port 1 refuses at once: a fast, offline pull failure.
      unpullableImage: '127.0.0.1:1/orchard-test/missing:1',
      runId,
      simulateExit: () => {}, // the real process exits on its own
      cleanup: removeRunContainers,
    };
  });

  describe('engine specifics', () => {
    const rt = new DockerRuntime();
    beforeAll(ensureTestImage);
    afterAll(removeRunContainers);

    it("reports local images that name no registry host with the engine's platform for them (NodeInfo.localImages)", async () => {
      const list = await rt.localImagePlatforms(256);
      const { stdout } = await sh('docker', ['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', IMAGE]);
      expect(list).toContainEqual({ image: IMAGE, platform: stdout.trim() });
      expect(list.every((i) => !/^[^/]*[.:][^/]*\//.test(i.image) && !i.image.startsWith('localhost/'))).toBe(true);
      expect(await rt.localImagePlatforms(1)).toHaveLength(1);
    });

    it('sets NanoCpus, Memory, port bindings, restart policy "no" and command/args', async () => {
      const id = await rt.createContainer({
        name: `orchard_limits_c_${runId}`,
        image: IMAGE,
        command: ['sh', '-c'],
        args: ['sleep 3600'],
        env: [{ name: 'A', value: 'b=c' }],
        labels: { [LABELS.node]: `n-${runId}`, 'orchard.test-run': runId },
        ports: [{ containerPort: 80, hostPort: 18081, hostIP: '127.0.0.1', protocol: 'TCP' }],
        cpuMillis: 500,
        memoryBytes: 64 * 1024 * 1024,
        network: 'bridge',
      });
      const { stdout } = await sh('docker', ['inspect', id]);
      const [i] = JSON.parse(stdout) as Array<{
        HostConfig: {
          NanoCpus: number;
          Memory: number;
          RestartPolicy: { Name: string };
          PortBindings: Record<string, Array<{ HostIp: string; HostPort: string }>>;
        };
        Config: { Entrypoint: string[]; Cmd: string[]; Env: string[] };
      }>;
      expect(i?.HostConfig.NanoCpus).toBe(500_000_000);
      expect(i?.HostConfig.Memory).toBe(64 * 1024 * 1024);
      expect(i?.HostConfig.RestartPolicy.Name).toBe('no');
      expect(i?.HostConfig.PortBindings['80/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: '18081' }]);
      expect(i?.Config.Entrypoint).toEqual(['sh', '-c']);
      expect(i?.Config.Cmd).toEqual(['sleep 3600']);
      expect(i?.Config.Env).toContain('A=b=c');
      await rt.remove(id);
    });

    it('maps the pod resolver (services) to HostConfig Dns, DnsSearch and DnsOptions', async () => {
      const id = await rt.createContainer({
        name: `orchard_dns_c_${runId}`,
        image: IMAGE,
        command: ['sleep', '3600'],
        env: [],
        labels: { [LABELS.node]: `n-${runId}`, 'orchard.test-run': runId },
        ports: [],
        network: 'bridge',
        dns: ['10.250.0.1'],
        dnsSearch: ['svc.orchard'],
        dnsOptions: ['ndots:1'],
      });
      const { stdout } = await sh('docker', ['inspect', id]);
      const [i] = JSON.parse(stdout) as Array<{ HostConfig: { Dns: string[] | null; DnsSearch: string[] | null; DnsOptions: string[] | null } }>;
      expect(i?.HostConfig).toMatchObject({ Dns: ['10.250.0.1'], DnsSearch: ['svc.orchard'], DnsOptions: ['ndots:1'] });
      await rt.remove(id);
    });

    it('maps the security fields to HostConfig (SecurityOpt, CapAdd/CapDrop, PidsLimit, ReadonlyRootfs) and User', async () => {
      const id = await rt.createContainer({
        name: `orchard_sec_c_${runId}`,
        image: IMAGE,
        command: ['sleep', '3600'],
        env: [],
        labels: { [LABELS.node]: `n-${runId}`, 'orchard.test-run': runId },
        ports: [],
        network: 'none',
        user: '65534:65534',
        readOnlyRootfs: true,
        noNewPrivileges: true,
        capAdd: ['NET_BIND_SERVICE'],
        capDrop: ['NET_RAW'],
        pidsLimit: 64,
      });
      const { stdout } = await sh('docker', ['inspect', id]);
      const [i] = JSON.parse(stdout) as Array<{
        HostConfig: { SecurityOpt: string[] | null; CapAdd: string[] | null; CapDrop: string[] | null; PidsLimit: number | null; ReadonlyRootfs: boolean };
        Config: { User: string };
      }>;
      expect(i?.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
      expect(i?.HostConfig.CapAdd).toEqual(['NET_BIND_SERVICE']);
      expect(i?.HostConfig.CapDrop).toEqual(['NET_RAW']);
      expect(i?.HostConfig.PidsLimit).toBe(64);
      expect(i?.HostConfig.ReadonlyRootfs).toBe(true);
      expect(i?.Config.User).toBe('65534:65534');
      await rt.remove(id);
    });

    it("reads an image's configured user ('' = root) and says ERR_NOT_FOUND for a missing image", async () => {
      expect(await rt.imageUser(IMAGE)).toBe('');
      await expect(rt.imageUser(`orchard-test/absent-${runId}:1`)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    });

    it('reports the engine’s text when start fails', async () => {
      const id = await rt.createContainer({
        name: `orchard_badcmd_c_${runId}`,
        image: IMAGE,
        command: ['/no/such/binary'],
        env: [],
        labels: { [LABELS.node]: `n-${runId}`, 'orchard.test-run': runId },
        ports: [],
        network: 'none',
      });
      await expect(rt.start(id)).rejects.toThrow(/no such file|not found/i);
      await rt.remove(id);
    });

    it('reconciles a two-container pod on the real engine and restarts a crash via the die event', async () => {
      const node = `rec-${runId}`;
      const pod = DesiredPodSchema.parse({
        name: 'crashy',
        uid: `u-${runId}`,
        spec: {
          network: 'none',
          containers: [
            { name: 'app', image: IMAGE, command: ['sh', '-c', 'sleep 2; exit 3'] },
            { name: 'side', image: IMAGE, command: ['sleep', '3600'] },
          ],
        },
      });
      let latest: ObservedPod[] = [];
      const rec = new Reconciler({
        node,
        runtime: rt,
        onObserved: (pods) => {
          latest = pods;
        },
        resyncMs: 60_000,
      });
      rec.setDesired([pod], 1);
      await rec.start();
      try {
        const end = Date.now() + 20_000;
        // The resync is 60 s, so only the engine's die event can bring the restart this fast.
        while ((latest[0]?.containers[0]?.restartCount ?? 0) < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
        const app = latest[0]?.containers[0];
        expect(app?.restartCount).toBeGreaterThanOrEqual(1);
        const side = latest[0]?.containers[1];
        expect(side?.state).toBe('running');
        const { stdout } = await sh('docker', ['inspect', '-f', '{{.HostConfig.NetworkMode}}', side?.containerId ?? '']);
        expect(stdout.trim()).toBe(`container:${app?.containerId}`);
      } finally {
        await rec.stop();
      }
    }, 30_000);

    it('defaults an untagged image to :latest', () => {
      expect(withDefaultTag('busybox')).toBe('busybox:latest');
      expect(withDefaultTag('127.0.0.1:5000/app')).toBe('127.0.0.1:5000/app:latest');
      expect(withDefaultTag('127.0.0.1:5000/app:2')).toBe('127.0.0.1:5000/app:2');
      expect(withDefaultTag('app@sha256:abc')).toBe('app@sha256:abc');
    });
  });
});
