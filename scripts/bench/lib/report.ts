import type { ScenarioResult } from './scenario.js';

/** Markdown for the bench's results: one row per fleet size, then the targets. */

const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;
const sec = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const phase = (p: { ok: boolean; ms: number }): string => (p.ok ? sec(p.ms) : `MISS (>${sec(p.ms)})`);

export interface SchedulerRow {
  nodes: number;
  pods: number;
  mode: string;
  ms: number;
  podsPerSec: number;
}

export function fleetTable(rows: readonly ScenarioResult[]): string {
  const head = [
    'store',
    'nodes',
    'pods',
    'all nodes Ready',
    'apply (HTTP)',
    'all bound',
    'all Running',
    'pods/s (apply→Running)',
    'hub peak RSS',
    'hub CPU',
    'heartbeat lag p50 / p99 (deploying)',
    'heartbeat lag p50 / p99 (steady)',
    'agent message → ingested, max (deploying / recovering)',
    'hub loop delay p99 (steady)',
    'kill -9 → hub listening',
    '→ all nodes back',
    '→ all pods reported Running',
    'pods unchanged',
    'restarted hub peak RSS',
    'agent link builds',
    'load avg start → end',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    lines.push(
      `| ${[
        r.store,
        r.nodes.toLocaleString('en-US'),
        r.pods.toLocaleString('en-US'),
        phase(r.register),
        `${sec(r.deploy.applyMs)}${r.deploy.applyRetries > 0 ? ` (${r.deploy.applyRetries} retried)` : ''}`,
        r.deploy.ok ? sec(r.deploy.boundMs) : '—',
        phase(r.deploy),
        r.deploy.podsPerSec.toLocaleString('en-US'),
        mib(r.hub.peakRssBytes),
        `${r.hub.cpuSeconds.toFixed(1)} s`,
        `${r.lagUnderLoad.p50Ms.toFixed(0)} / ${r.lagUnderLoad.p99Ms.toFixed(0)} ms (n=${r.lagUnderLoad.samples})`,
        `${r.lagSteady.p50Ms.toFixed(0)} / ${r.lagSteady.p99Ms.toFixed(0)} ms (n=${r.lagSteady.samples})`,
        `${sec(r.ingestLagMaxMs.deploy)} / ${sec(r.ingestLagMaxMs.recover)}`,
        `${r.loopDelaySteady.p99Ms.toFixed(0)} ms`,
        sec(r.recover.hubUpMs),
        r.recover.ok ? sec(r.recover.nodesMs) : '—',
        phase(r.recover),
        r.recover.hubUpMs === 0 ? '—' : r.recover.podsUnchanged ? 'yes' : 'NO',
        mib(r.recover.hubPeakRssBytes),
        r.agents.linkBuilds.toLocaleString('en-US'),
        `${r.load.start.toFixed(1)} → ${r.load.end.toFixed(1)}`,
      ].join(' | ')} |`,
    );
  }
  for (const r of rows) {
    if (!r.etcd) continue;
    const m = r.etcd.members.map((x) => `${x.name} ${mib(x.dbSize)} (in use ${mib(x.dbSizeInUse)}), revision ${x.revision.toLocaleString('en-US')}`).join('; ');
    lines.push(
      '',
      `${r.nodes.toLocaleString('en-US')} nodes on etcd: the restarted hub won the election ${r.etcd.wonMs === undefined ? '—' : sec(r.etcd.wonMs)},` +
        ` led (identity, store ${r.etcd.storeFrom === undefined ? '?' : r.etcd.storeFrom.source === 'standby-copy' ? 'from its standby copy' : `loaded from etcd: ${r.etcd.storeFrom.reason}`})` +
        ` ${sec(r.etcd.electedMs)} and listened ${sec(r.etcd.listeningMs)} after the kill; etcd backends at the end: ${m || '—'}`,
    );
  }
  const errs = rows.flatMap((r) => r.errors.map((e) => `- ${r.nodes} nodes: ${e}`));
  if (errs.length > 0) lines.push('', 'Errors:', ...errs);
  for (const r of rows) {
    for (const p of [r.register, r.deploy, r.recover]) if (!p.ok && p.detail) lines.push(`- ${r.nodes} nodes: ${p.detail}`);
  }
  return lines.join('\n');
}

export function targetsTable(rows: readonly ScenarioResult[], sched: readonly SchedulerRow[]): string {
  const s5k = sched.find((r) => r.nodes === 5000 && r.mode.startsWith('sampled'));
  const big = rows.find((r) => r.nodes === 10_000);
  const worstRecover = rows.reduce<ScenarioResult | undefined>((w, r) => (!w || !r.recover.ok || r.recover.ms > w.recover.ms ? r : w), undefined);
  const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'not run' : ok ? 'met' : 'MISSED');
  const n = (x: number): string => x.toLocaleString('en-US');
  const schedMeasured = s5k ? `${n(s5k.podsPerSec)} pods/s (${n(s5k.pods)} pods, default sampling)` : 'not run';
  const bigMeasured = big
    ? `${n(big.pods)} pods ${big.deploy.ok ? 'all Running' : 'NOT all Running'}; ` +
      `peak RSS ${mib(big.hub.peakRssBytes)} (after restart ${mib(big.recover.hubPeakRssBytes)})`
    : 'not run';
  const bigOk = big ? big.deploy.ok && big.register.ok && Math.max(big.hub.peakRssBytes, big.recover.hubPeakRssBytes) <= 2 ** 30 : undefined;
  const recoverTime = worstRecover?.recover.ok ? sec(worstRecover.recover.ms) : `not reconverged within ${sec(worstRecover?.recover.ms ?? 0)}`;
  const recoverMeasured = worstRecover ? `worst ${recoverTime} (${n(worstRecover.nodes)} nodes)` : 'not run';
  const recoverOk = worstRecover ? worstRecover.recover.ok && worstRecover.recover.ms <= 60_000 : undefined;
  const lines = [
    '| target | measured | verdict |',
    '|---|---|---|',
    `| pure scheduler ≥ 10,000 pods/s at 5,000 nodes | ${schedMeasured} | ${verdict(s5k ? s5k.podsPerSec >= 10_000 : undefined)} |`,
    `| 10,000 nodes + 100,000 pods on one hub, hub RSS ≤ 1 GiB | ${bigMeasured} | ${verdict(bigOk)} |`,
    `| reconnect storm reconverged ≤ 60 s (kill -9 → all nodes back and all pods reported) | ${recoverMeasured} | ${verdict(recoverOk)} |`,
  ];
  return lines.join('\n');
}

export function schedulerTable(rows: readonly SchedulerRow[]): string {
  return [
    '| nodes | pods | mode | ms | pods/s |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.nodes} | ${r.pods} | ${r.mode} | ${r.ms} | ${r.podsPerSec.toLocaleString('en-US')} |`),
  ].join('\n');
}

/** Parses the rows of scripts/bench/scheduler.ts's console.table output. */
export function parseSchedulerTable(out: string): SchedulerRow[] {
  const rows: SchedulerRow[] = [];
  for (const line of out.split('\n')) {
    const cells = line
      .split('│')
      .map((c) => c.trim())
      .filter((c) => c !== '');
    // (index) nodes pods mode ms pods/s bound unschedulable max
    if (cells.length < 6 || !/^\d+$/.test(cells[0] ?? '')) continue;
    const num = (i: number): number => Number((cells[i] ?? '').replace(/[^\d.]/g, ''));
    rows.push({ nodes: num(1), pods: num(2), mode: (cells[3] ?? '').replace(/'/g, ''), ms: num(4), podsPerSec: num(5) });
  }
  return rows;
}
