/**
 * Inline SVG charts for the HTML report: grouped bars (accuracy per domain and model) and line charts (loss
 * terms and learning rate over iterations). Plain strings, no libraries, no scripts.
 */

/** Escapes text for HTML and SVG content and attribute values. */
export function esc(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number rounded for coordinates (keeps the markup small). */
function r(x: number): string {
  return String(Math.round(x * 10) / 10);
}

/**
 * The horizontal grid lines and labels of a 0–100 % axis, every 20 %, between x = `left` and `right`; `y` maps a
 * fraction to its height. Shared by the bar charts of the demo report and the benchmark page.
 */
export function percentGrid(left: number, right: number, y: (v: number) => number): string[] {
  const parts: string[] = [];
  for (let t = 0; t <= 100; t += 20) {
    parts.push(`<line x1="${left}" x2="${right}" y1="${r(y(t / 100))}" y2="${r(y(t / 100))}" class="grid"/>`,
      `<text x="${left - 6}" y="${r(y(t / 100) + 4)}" class="tick" text-anchor="end">${t}%</text>`);
  }
  return parts;
}

/** A series of bars: one value per group (null = missing). */
export interface BarSeries {
  name: string;
  colour: string;
  values: (number | null)[];
}

/**
 * Grouped vertical bars on a 0–1 scale shown as percentages, with a dashed chance line. Every bar is a
 * `<rect class="bar" data-group=… data-series=… data-value=…>`, so tests and people can find them.
 */
export function barChart(groups: { name: string; caption?: string }[], series: BarSeries[], opts: { chance?: number; width?: number; height?: number; title?: string } = {}): string {
  const width = opts.width ?? 760;
  const height = opts.height ?? 320;
  const m = { left: 48, right: 78, top: 34, bottom: 54 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const y = (v: number) => m.top + plotH * (1 - Math.min(1, Math.max(0, v)));
  const groupW = plotW / Math.max(1, groups.length);
  const barW = Math.min(44, (groupW * 0.8) / Math.max(1, series.length));
  const parts: string[] = percentGrid(m.left, width - m.right, y);
  groups.forEach((g, gi) => {
    const x0 = m.left + gi * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const x = x0 + si * barW;
      parts.push(`<rect class="bar" data-group="${esc(g.name)}" data-series="${esc(s.name)}" data-value="${v.toFixed(4)}" ` +
        `x="${r(x + 2)}" y="${r(y(v))}" width="${r(barW - 4)}" height="${r(y(0) - y(v))}" fill="${esc(s.colour)}">` +
        `<title>${esc(`${s.name} on ${g.name}: ${(100 * v).toFixed(1)}%`)}</title></rect>`,
      `<text x="${r(x + barW / 2)}" y="${r(y(v) - 4)}" class="value" text-anchor="middle">${Math.round(100 * v)}</text>`);
    });
    const cx = m.left + gi * groupW + groupW / 2;
    parts.push(`<text x="${r(cx)}" y="${r(height - m.bottom + 18)}" class="label" text-anchor="middle">${esc(g.name)}</text>`);
    if (g.caption) parts.push(`<text x="${r(cx)}" y="${r(height - m.bottom + 34)}" class="caption" text-anchor="middle">${esc(g.caption)}</text>`);
  });
  if (opts.chance !== undefined) {
    const cy = r(y(opts.chance));
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${cy}" y2="${cy}" class="chance"/>`,
      // The label sits in the right margin, where no bar can hide it.
      `<text x="${width - m.right + 6}" y="${r(y(opts.chance) + 4)}" class="chance-label">chance ${(100 * opts.chance).toFixed(0)}%</text>`);
  }
  // Legend entries spaced by their text length (about 7 px per character at 12 px).
  let lx = m.left;
  const legend = series.map((s) => {
    const item = `<rect x="${lx}" y="8" width="12" height="12" fill="${esc(s.colour)}"/><text x="${lx + 17}" y="18" class="legend">${esc(s.name)}</text>`;
    lx += 17 + 7 * s.name.length + 24;
    return item;
  }).join('');
  return `<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img"` +
    `${opts.title ? ` aria-label="${esc(opts.title)}"` : ''}>${legend}${parts.join('')}</svg>`;
}

/** A line of a line chart. */
export interface LineSeries {
  name: string;
  colour: string;
  points: { x: number; y: number }[];
}

/** `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 4): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** A tick label: short, exponent form for tiny or huge values. */
function tickText(v: number): string {
  const a = Math.abs(v);
  if (v === 0) return '0';
  if (a < 1e-2 || a >= 1e4) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

/** Moving average over a centred window of `w` points (w = 1 returns the points). */
export function smooth(points: { x: number; y: number }[], w: number): { x: number; y: number }[] {
  if (w <= 1) return points;
  const h = Math.floor(w / 2);
  return points.map((p, i) => {
    const lo = Math.max(0, i - h);
    const hi = Math.min(points.length, i + h + 1);
    let s = 0;
    for (let j = lo; j < hi; j++) s += points[j]!.y;
    return { x: p.x, y: s / (hi - lo) };
  });
}

/**
 * A line chart with a title, axes and one polyline per series (`<polyline class="curve" data-series=…>`).
 * Noisy series (more than 40 points) are drawn faint with a moving average on top.
 */
export function lineChart(title: string, series: LineSeries[], opts: { width?: number; height?: number; xLabel?: string; key?: string } = {}): string {
  const width = opts.width ?? 360;
  const height = opts.height ?? 200;
  const m = { left: 50, right: 12, top: 40, bottom: 30 };
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y) && Number.isFinite(p.x));
  let xLo = Math.min(...all.map((p) => p.x)), xHi = Math.max(...all.map((p) => p.x));
  let yLo = Math.min(...all.map((p) => p.y)), yHi = Math.max(...all.map((p) => p.y));
  if (all.length === 0) { xLo = 0; xHi = 1; yLo = 0; yHi = 1; }
  if (xHi === xLo) xHi = xLo + 1;
  if (yHi === yLo) { yHi += Math.abs(yHi) * 0.1 || 1; yLo -= Math.abs(yLo) * 0.1 || 0; }
  const pad = (yHi - yLo) * 0.05;
  yLo -= pad; yHi += pad;
  const X = (v: number) => m.left + ((v - xLo) / (xHi - xLo)) * (width - m.left - m.right);
  const Y = (v: number) => m.top + (1 - (v - yLo) / (yHi - yLo)) * (height - m.top - m.bottom);
  const parts: string[] = [];
  for (const t of niceTicks(yLo, yHi)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${r(Y(t))}" y2="${r(Y(t))}" class="grid"/>`,
      `<text x="${m.left - 5}" y="${r(Y(t) + 4)}" class="tick" text-anchor="end">${esc(tickText(t))}</text>`);
  }
  for (const t of niceTicks(xLo, xHi, 4)) {
    parts.push(`<text x="${r(X(t))}" y="${height - m.bottom + 14}" class="tick" text-anchor="middle">${esc(tickText(t))}</text>`);
  }
  const line = (pts: { x: number; y: number }[]) => pts.filter((p) => Number.isFinite(p.y)).map((p) => `${r(X(p.x))},${r(Y(p.y))}`).join(' ');
  for (const s of series) {
    if (s.points.length === 0) continue;
    const noisy = s.points.length > 40;
    if (noisy) parts.push(`<polyline class="raw" points="${line(s.points)}" stroke="${esc(s.colour)}"/>`);
    const shown = noisy ? smooth(s.points, Math.max(3, Math.round(s.points.length / 25))) : s.points;
    parts.push(`<polyline class="curve" data-series="${esc(s.name)}"${opts.key ? ` data-key="${esc(opts.key)}"` : ''} ` +
      `points="${line(shown)}" stroke="${esc(s.colour)}"/>`);
  }
  parts.push(`<text x="${m.left}" y="16" class="chart-title">${esc(title)}</text>`,
    `<text x="${width - m.right}" y="${height - 4}" class="caption" text-anchor="end">${esc(opts.xLabel ?? 'iteration')}</text>`);
  // Legend on its own row under the title, so long titles never collide with it.
  let lx = m.left;
  const legend = series.filter((s) => s.points.length > 0).map((s) => {
    const item = `<text x="${lx}" y="32" class="legend"><tspan style="fill:${esc(s.colour)}">■</tspan> ${esc(s.name)}</text>`;
    lx += 7 * s.name.length + 30;
    return item;
  }).join('');
  return `<svg class="chart lines" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" ` +
    `aria-label="${esc(title)}">${parts.join('')}${legend}</svg>`;
}
