// Charts drawn as SVG elements built one by one (no library, no CDN: hubs are often offline).
// Sizes and colours are SVG attributes or CSS classes: the hub's CSP allows no inline style.

import { h, s } from './dom.js';

const clamp01 = (x) => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);
const level = (f) => (f >= 0.9 ? 'bad' : f >= 0.75 ? 'warn' : 'ok');

/**
 * A horizontal usage bar: `used` of `total` (with an optional `requested` mark), and a label.
 * Unknown usage (null) draws an empty bar labelled "—".
 */
export function usageBar(used, total, label, requested) {
  const f = used === null || used === undefined || !total ? null : used / total;
  const svg = s(
    'svg',
    { class: 'bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    s('rect', { class: 'bar-bg', x: 0, y: 0, width: 100, height: 10 }),
    f === null ? null : s('rect', { class: `bar-fg ${level(f)}`, x: 0, y: 0, width: (clamp01(f) * 100).toFixed(2), height: 10 }),
    requested && total ? s('rect', { class: 'bar-req', x: (clamp01(requested / total) * 100 - 0.6).toFixed(2), y: 0, width: 1.2, height: 10 }) : null,
  );
  return h('div', { class: 'usage' }, svg, h('span', { class: 'usage-label' }, label));
}

/** A ring of segments [{value, kind, label}] with the total in the middle, and a legend. */
export function donut(segments, caption) {
  const total = segments.reduce((a, x) => a + x.value, 0);
  const r = 15.915; // circumference 100
  let offset = 25; // start at 12 o'clock
  const arcs = [];
  for (const seg of segments) {
    if (seg.value <= 0 || total === 0) continue;
    const len = (seg.value / total) * 100;
    arcs.push(
      s('circle', {
        class: `arc ${seg.kind}`,
        cx: 21,
        cy: 21,
        r,
        'stroke-dasharray': `${len.toFixed(3)} ${(100 - len).toFixed(3)}`,
        'stroke-dashoffset': offset.toFixed(3),
      }),
    );
    offset = (offset - len + 100) % 100;
  }
  return h(
    'figure',
    { class: 'donut' },
    s(
      'svg',
      { viewBox: '0 0 42 42', role: 'img', 'aria-label': `${caption}: ${segments.map((x) => `${x.value} ${x.label}`).join(', ')}` },
      s('circle', { class: 'arc-bg', cx: 21, cy: 21, r }),
      arcs,
      s('text', { class: 'donut-total', x: 21, y: 21 }, String(total)),
      s('text', { class: 'donut-caption', x: 21, y: 27 }, caption),
    ),
    h(
      'figcaption',
      null,
      segments.map((x) => h('span', { class: 'legend' }, h('i', { class: `swatch ${x.kind}` }), `${x.label} ${x.value}`)),
    ),
  );
}

/** Horizontal bars for a few named counts (e.g. nodes by architecture). */
export function countBars(entries, caption) {
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const rowH = 14;
  const height = Math.max(1, entries.length) * rowH;
  return h(
    'figure',
    { class: 'counts' },
    s(
      'svg',
      { viewBox: `0 0 200 ${height}`, role: 'img', 'aria-label': `${caption}: ${entries.map(([k, n]) => `${k} ${n}`).join(', ')}` },
      entries.map(([k, n], i) => [
        s('text', { class: 'count-key', x: 0, y: i * rowH + 10 }, k),
        s('rect', { class: 'count-bar', x: 60, y: i * rowH + 2, width: ((n / max) * 110).toFixed(2), height: 9 }),
        s('text', { class: 'count-n', x: 64 + (n / max) * 110, y: i * rowH + 10 }, String(n)),
      ]),
    ),
    h('figcaption', null, caption),
  );
}

/**
 * A line chart of one or more series over time: series = [{label, kind, points: [{t, v}]}].
 * `format` labels the y axis; `yMax` fixes the top (e.g. capacity), else the data's maximum.
 * @param {Array<{label: string, kind?: string, points: Array<{t: number, v: number}>}>} series
 * @param {{title?: string, format?: (n: number) => string, yMax?: number, width?: number, height?: number}} [opts]
 */
export function lineChart(series, { title, format = String, yMax, width = 480, height = 150 } = {}) {
  const all = series.flatMap((x) => x.points);
  const pad = { l: 48, r: 8, t: 8, b: 20 };
  const w = width - pad.l - pad.r;
  const hgt = height - pad.t - pad.b;
  const children = [];
  if (all.length < 2) {
    children.push(s('text', { class: 'chart-empty', x: width / 2, y: height / 2 }, 'collecting data (one point a minute)'));
  } else {
    const t0 = Math.min(...all.map((p) => p.t));
    const t1 = Math.max(...all.map((p) => p.t));
    const top = yMax ?? Math.max(...all.map((p) => p.v));
    const ymax = top > 0 ? top : 1;
    const x = (t) => pad.l + (t1 === t0 ? w : ((t - t0) / (t1 - t0)) * w);
    const y = (v) => pad.t + hgt - (Math.min(v, ymax) / ymax) * hgt;
    for (const frac of [0, 0.5, 1]) {
      const yy = y(ymax * frac);
      children.push(s('line', { class: 'grid', x1: pad.l, x2: pad.l + w, y1: yy, y2: yy }));
      children.push(s('text', { class: 'axis', x: pad.l - 4, y: yy + 3 }, format(ymax * frac)));
    }
    const minutes = Math.round((t1 - t0) / 60000);
    children.push(s('text', { class: 'axis start', x: pad.l, y: height - 4 }, `${minutes} min ago`));
    children.push(s('text', { class: 'axis end', x: pad.l + w, y: height - 4 }, 'now'));
    for (const ser of series) {
      if (ser.points.length === 0) continue;
      const pts = ser.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
      children.push(s('polyline', { class: `line ${ser.kind ?? ''}`, points: pts }));
    }
  }
  return h(
    'figure',
    { class: 'chart' },
    title
      ? h(
          'figcaption',
          null,
          title,
          ' ',
          series.map((ser) => h('span', { class: 'legend' }, h('i', { class: `swatch ${ser.kind ?? ''}` }), ser.label)),
        )
      : null,
    s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title ?? 'chart' }, children),
  );
}

/** A tiny line of recent values, for table cells. */
export function sparkline(values, max) {
  if (values.length < 2) return h('span', { class: 'muted' }, '—');
  const top = max ?? Math.max(...values);
  const m = top > 0 ? top : 1;
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * 60).toFixed(1)},${(14 - (Math.min(v, m) / m) * 13).toFixed(1)}`).join(' ');
  return s('svg', { class: 'spark', viewBox: '0 0 60 15', role: 'img', 'aria-label': 'recent usage' }, s('polyline', { class: 'line', points: pts }));
}
