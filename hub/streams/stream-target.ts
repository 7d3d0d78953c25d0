import type { LogsArgs } from '../../protocol/api.js';
import { OrchardError, parseOrThrow } from '../../protocol/errors.js';
import { MQTT_LOGS_MAX_BYTES } from '../../protocol/api.js';
import { LOGS_SINCE_AGO, MAX_SINCE_AGO_SECONDS, StreamPodNameSchema, type LogsOpen } from '../../protocol/streams.js';
import type { Store } from '../store/store.js';
import type { StreamHub } from './stream-hub.js';

/** The pod's node and the container asked for (default: the pod's first), or the error a user should see. */
export function streamTarget(store: Store, pod: string, container: string | undefined): { node: string; container: string } {
  const name = parseOrThrow(StreamPodNameSchema, pod, 'pod name', 'name');
  const p = store.get('Pod', name);
  if (p === undefined) throw new OrchardError('ERR_NOT_FOUND', `pod "${name}" not found`);
  const names = p.spec.containers.map((c) => c.name);
  const c = container ?? names[0];
  if (c === undefined || !names.includes(c))
    throw new OrchardError('ERR_NOT_FOUND', `pod "${name}" has no container "${container}" (it has ${names.join(', ')})`);
  const node = p.spec.nodeName;
  if (node === undefined || node === '') throw new OrchardError('ERR_CONTAINER_NOT_RUNNING', `pod "${name}" is not placed on a node yet`);
  return { node, container: c };
}

/**
 * A logs open's window for "the last `agoSeconds`" (`--since`, the MQTT `sinceSeconds`). An agent
 * that lists LOGS_SINCE_AGO gets the duration and measures it on its own clock, so a device whose
 * clock differs from the hub's still gets the lines of the last `agoSeconds`. An older agent
 * (no such feature; its strict schema would refuse the field) gets the absolute time from the
 * hub's clock as before, and its window is off by however far the two clocks differ. Pure.
 */
export function logsSinceFields(
  agoSeconds: number | undefined,
  agentFeatures: readonly string[] | undefined,
  hubNowMs: number,
): Pick<LogsOpen, 'sinceSeconds' | 'sinceAgoSeconds'> {
  if (agoSeconds === undefined) return {};
  const ago = Math.min(Math.max(0, Math.ceil(agoSeconds)), MAX_SINCE_AGO_SECONDS);
  if (agentFeatures?.includes(LOGS_SINCE_AGO) === true) return { sinceAgoSeconds: ago };
  return { sinceSeconds: Math.max(0, Math.floor(hubNowMs / 1000 - ago)) };
}

/** logsSinceFields for the features `node`'s agent last reported (none known: the fallback). */
export function nodeLogsSince(
  store: Store,
  node: string,
  agoSeconds: number | undefined,
  hubNowMs: number,
): Pick<LogsOpen, 'sinceSeconds' | 'sinceAgoSeconds'> {
  return logsSinceFields(agoSeconds, store.get('Node', node)?.status.info?.features, hubNowMs);
}

/**
 * One bounded log read (the MQTT `logs` command): the log's last MQTT_LOGS_MAX_BYTES at most, as
 * text. The sink drains at once, so this costs the hub at most the cap plus one window.
 */
export async function readLogs(
  store: Store,
  streams: StreamHub,
  now: () => number,
  args: LogsArgs,
): Promise<{ pod: string; container: string; text: string; truncated: boolean }> {
  const t = streamTarget(store, args.pod, args.container);
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const done = new Promise<void>((resolve, reject) => {
    void streams
      .open(
        t.node,
        {
          kind: 'logs',
          pod: args.pod,
          container: t.container,
          follow: false,
          previous: args.previous === true,
          ...(args.tail !== undefined ? { tail: args.tail } : {}),
          // The args' sinceSeconds is a duration ("seconds back from now"), measured on the device.
          ...nodeLogsSince(store, t.node, args.sinceSeconds, now()),
        },
        {
          write: (_fd, data, drained) => {
            chunks.push(data);
            size += data.length;
            // Keep the end of the log: drop whole chunks from the front beyond the cap.
            while (size > MQTT_LOGS_MAX_BYTES && chunks.length > 1) {
              size -= chunks.shift()!.length;
              truncated = true;
            }
            drained();
          },
          end: () => resolve(),
          fail: (err) => reject(err),
        },
      )
      .catch(reject);
  });
  await done;
  let buf = Buffer.concat(chunks);
  if (buf.length > MQTT_LOGS_MAX_BYTES) {
    buf = buf.subarray(buf.length - MQTT_LOGS_MAX_BYTES);
    truncated = true;
  }
  return { pod: args.pod, container: t.container, text: buf.toString('utf8'), truncated };
}
