import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
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

    describe('exec, logs, volumes and stats through the Engine API client', () => {
      const node = `x-${runId}`;
      let id = '';
      beforeAll(async () => {
        id = await rt.createContainer({
          name: `orchard_x_c_${runId}`,
          image: IMAGE,
          command: ['sh', '-c', 'echo out-1; sleep 0.2; echo err-1 >&2; sleep 0.2; echo out-2; sleep 3600'],
          env: [],
          labels: { [LABELS.node]: node, 'orchard.test-run': runId },
          ports: [],
          network: 'none',
        });
        await rt.start(id);
      });

      const collect = async (r: Readable): Promise<Array<{ fd: number; text: string }>> => {
        const out: Array<{ fd: number; text: string }> = [];
        for await (const c of r as AsyncIterable<{ fd: 1 | 2; data: Buffer }>) out.push({ fd: c.fd, text: c.data.toString() });
        return out;
      };

      it('exec returns stdout and stderr in order and the exit code', async () => {
        const r = await rt.exec(id, ['sh', '-c', 'echo a; sleep 0.2; echo b >&2; exit 7']);
        expect(r).toEqual({ exitCode: 7, output: 'a\nb\n' });
        await expect(rt.exec(`absent${runId}`, ['true'])).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
      });

      it('execStream passes stdin through (half-closed at end) and keeps stdout and stderr apart', async () => {
        const s = await rt.execStream(id, { command: ['sh', '-c', 'cat; echo done >&2'], tty: false, stdin: true }, AbortSignal.timeout(10_000));
        const got = collect(s.output);
        s.stdin?.write('hello ');
        s.stdin?.end('engine\n');
        const chunks = await got;
        expect(
          chunks
            .filter((c) => c.fd === 1)
            .map((c) => c.text)
            .join(''),
        ).toBe('hello engine\n');
        expect(
          chunks
            .filter((c) => c.fd === 2)
            .map((c) => c.text)
            .join(''),
        ).toBe('done\n');
        expect(await s.exitCode()).toBe(0);
      });

      it('execStream with a TTY sets the size it was given and resizes', async () => {
        const s = await rt.execStream(
          id,
          { command: ['sh', '-c', 'sleep 0.3; stty size; read x; stty size'], tty: true, stdin: true, cols: 91, rows: 17 },
          AbortSignal.timeout(10_000),
        );
        const got = collect(s.output);
        await new Promise((r) => setTimeout(r, 600));
        await s.resize(120, 40);
        s.stdin?.write('go\r');
        const text = (await got).map((c) => c.text).join('');
        expect(text).toContain('17 91');
        expect(text).toContain('40 120');
        expect(await s.exitCode()).toBe(0);
      });

      it('logs reads the tail with stdout and stderr apart, and follow goes on until closed', async () => {
        // The lines are 0.2 s apart (stdout and stderr are copied by separate engine goroutines).
        let all: Array<{ fd: number; text: string }> = [];
        for (const end = Date.now() + 5_000; all.length < 3 && Date.now() < end; await new Promise((r) => setTimeout(r, 100)))
          all = await collect(await rt.logs(id, { follow: false, sinceSeconds: 0 }, AbortSignal.timeout(10_000)));
        expect(all.map((c) => c.text).join('')).toBe('out-1\nerr-1\nout-2\n');
        const tail = await collect(await rt.logs(id, { follow: false, tail: 2 }, AbortSignal.timeout(10_000)));
        expect(tail).toEqual([
          { fd: 2, text: 'err-1\n' },
          { fd: 1, text: 'out-2\n' },
        ]);
        const follow = await rt.logs(id, { follow: true, tail: 0 }, AbortSignal.timeout(10_000));
        const seen: string[] = [];
        follow.on('data', (c: { data: Buffer }) => seen.push(c.data.toString()));
        await rt.exec(id, ['sh', '-c', 'echo late > /proc/1/fd/1']);
        const end = Date.now() + 5_000;
        while (!seen.join('').includes('late') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
        expect(seen.join('')).toBe('late\n');
        follow.destroy();
      });

      it('ensures and lists labelled volumes with their usage', async () => {
        const name = `orchard-x-${runId}`;
        try {
          await rt.ensureVolume(name, { [LABELS.node]: node });
          await rt.ensureVolume(name, { [LABELS.node]: node }); // exists: no error
          const vols = await rt.listVolumes(node, { usage: true });
          expect(vols).toHaveLength(1);
          expect(vols[0]).toMatchObject({ name, labels: { [LABELS.node]: node } });
          expect(vols[0]?.usedBytes).toBeGreaterThanOrEqual(0);
        } finally {
          await sh('docker', ['volume', 'rm', '-f', name]);
        }
      });

      it("reads a container's usage from the engine's stats when its cgroup is not readable", async () => {
        const usage = (rt as unknown as { cgroups: { read: (ids: readonly string[]) => Promise<Map<string, unknown>> } }).cgroups;
        const read = usage.read;
        usage.read = async () => new Map(); // as for an agent that cannot see the host's cgroups
        try {
          const u = (await rt.containerUsage([id])).get(id);
          expect(u?.memoryBytes).toBeGreaterThan(0);
          expect(u?.cpuSeconds).toBeGreaterThanOrEqual(0);
        } finally {
          usage.read = read;
        }
      });
    });

    it('defaults an untagged image to :latest', () => {
      expect(withDefaultTag('busybox')).toBe('busybox:latest');
      expect(withDefaultTag('127.0.0.1:5000/app')).toBe('127.0.0.1:5000/app:latest');
      expect(withDefaultTag('127.0.0.1:5000/app:2')).toBe('127.0.0.1:5000/app:2');
      expect(withDefaultTag('app@sha256:abc')).toBe('app@sha256:abc');
    });
  });
});
