// Bar charts as inline SVG, drawn from the hourly buckets of
// GET /stats/imports. No library: a bar per hour, a tick per day.

import { h, s } from './dom.js';

const W = 720;
const H = 150;
const PAD_L = 44;
const PAD_B = 22;
const PAD_T = 8;

// A "nice" upper bound for the axis: 1, 2 or 5 times a power of ten.
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export function fmtNumber(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function fmtSeconds(n) {
  if (n >= 3600) return `${(n / 3600).toFixed(1)} h`;
  if (n >= 60) return `${(n / 60).toFixed(1)} min`;
  if (n > 0 && n < 1) return `${Math.round(n * 1000)} ms`;
  return `${n.toFixed(n >= 10 ? 0 : 1)} s`;
}

// One chart: `value(bucket)` per bar, `fmt` for the axis and the tooltips.
export function barChart({ id, title, buckets, value, fmt = fmtNumber, kind = 'files', unit = '' }) {
  const values = buckets.map(value);
  const max = niceMax(Math.max(0, ...values));
  const n = Math.max(buckets.length, 1);
  const plotW = W - PAD_L;
  const plotH = H - PAD_B - PAD_T;
  const bw = plotW / n;
  const total = values.reduce((a, b) => a + b, 0);
  const peakAt = values.indexOf(Math.max(...values));
  const summary = buckets.length
    ? `${title}: ${kind === 'duration' ? `longest ${fmt(Math.max(...values))}` : `${fmt(total)}${unit} in total`}` +
      (values[peakAt] > 0 ? `, peak ${fmt(values[peakAt])}${unit} at ${new Date(buckets[peakAt].hour).toLocaleString()}` : ', none')
    : `${title}: no data`;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: `chart chart-${kind}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`,
    preserveAspectRatio: 'none',
  },
  s('title', { id: `${id}-t` }, title),
  s('desc', { id: `${id}-d` }, summary),
  // the axis: 0, half, max
  [0, 0.5, 1].map((f) => {
    const y = PAD_T + plotH * (1 - f);
    return [
      s('line', { x1: PAD_L, x2: W, y1: y, y2: y, class: 'grid' }),
      s('text', { x: PAD_L - 4, y: y + 4, class: 'axis', 'text-anchor': 'end' }, fmt(max * f)),
    ];
  }),
  buckets.map((b, i) => {
    const v = values[i];
    const bh = (v / max) * plotH;
    const x = PAD_L + i * bw;
    const hour = new Date(b.hour);
    const parts = [];
    if (hour.getHours() === 0) {
      parts.push(s('line', { x1: x, x2: x, y1: PAD_T, y2: PAD_T + plotH, class: 'day' }));
      parts.push(s('text', { x: x + 2, y: H - 6, class: 'axis' }, hour.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })));
    }
    if (v > 0) {
      parts.push(s('rect', { x: x + bw * 0.1, y: PAD_T + plotH - bh, width: Math.max(bw * 0.8, 1), height: Math.max(bh, 1), class: 'bar' },
        s('title', {}, `${hour.toLocaleString()}: ${fmt(v)}${unit}`)));
    }
    return parts;
  }));
  return h('figure', { class: 'chart-box', id },
    h('figcaption', {}, title, h('span', { class: 'muted' }, ` — ${summary.slice(title.length + 2)}`)),
    svg);
}
