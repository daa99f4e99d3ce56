/**
 * The protection benchmark as one self-contained HTML page (no scripts, no external resources): per scenario a
 * bar chart of the mean accuracy per set with ±1 std error bars and one dot per seed, the table of mean ± std,
 * the metrics, and every target check per seed.
 */
import type { BenchmarkResult, BenchmarkScenarioSummary, Spread } from '../../ipclip/benchmark.js';
import { htmlPage, writeJsonAndPage } from './report.js';
import { esc, percentGrid } from './svg.js';

const COLOURS = { zeroShot: '#9aa5b1', reference: '#3e7cb1', protected: '#e07a1f' } as const;
const MODELS = [['zeroShot', 'zero-shot CLIP'], ['reference', 'reference (CE only)'], ['protected', 'IP-CLIP']] as const;

const pct = (x: number) => `${(100 * x).toFixed(1)}`;
const pm = (s: Spread) => `${pct(s.mean)} ± ${pct(s.std)}`;
const r1 = (x: number) => String(Math.round(x * 10) / 10);

/**
 * Grouped bars (one group per set, one bar per model) at the mean, a ±1 std whisker on each, and the per-seed
 * values as dots. Every bar is `<rect class="bar" data-group data-series data-mean data-std>` and every dot
 * `<circle class="seed" data-group data-series data-value>`, so tests and people can find them.
 */
export function errorBarChart(summary: BenchmarkScenarioSummary, chance: number, opts: { width?: number; height?: number } = {}): string {
  const names = Object.keys(summary.sets);
  const width = opts.width ?? Math.max(520, 120 + names.length * 130);
  const height = opts.height ?? 300;
  const m = { left: 48, right: 84, top: 30, bottom: 48 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const y = (v: number) => m.top + plotH * (1 - Math.min(1, Math.max(0, v)));
  const groupW = plotW / Math.max(1, names.length);
  const barW = Math.min(36, (groupW * 0.8) / MODELS.length);
  const parts: string[] = percentGrid(m.left, width - m.right, y);
  names.forEach((name, gi) => {
    const x0 = m.left + gi * groupW + (groupW - barW * MODELS.length) / 2;
    MODELS.forEach(([key, label], si) => {
      const s = summary.sets[name]![key];
      const x = x0 + si * barW;
      const cx = x + barW / 2;
      parts.push(`<rect class="bar" data-group="${esc(name)}" data-series="${key}" data-mean="${s.mean.toFixed(4)}" data-std="${s.std.toFixed(4)}" ` +
        `x="${r1(x + 2)}" y="${r1(y(s.mean))}" width="${r1(barW - 4)}" height="${r1(y(0) - y(s.mean))}" fill="${COLOURS[key]}">` +
        `<title>${esc(`${label} on ${name}: ${pm(s)} % over ${s.values.length} seeds`)}</title></rect>`);
      if (s.std > 0) {
        const lo = y(s.mean - s.std);
        const hi = y(s.mean + s.std);
        parts.push(`<path class="whisker" d="M${r1(cx)} ${r1(lo)}V${r1(hi)}M${r1(cx - 4)} ${r1(lo)}h8M${r1(cx - 4)} ${r1(hi)}h8" stroke="#1f2933" stroke-width="1.2" fill="none"/>`);
      }
      s.values.forEach((v, i) => {
        // Dots spread a little across the bar so that equal values stay visible.
        const dx = s.values.length > 1 ? ((i / (s.values.length - 1)) - 0.5) * (barW - 12) : 0;
        parts.push(`<circle class="seed" data-group="${esc(name)}" data-series="${key}" data-value="${v.toFixed(4)}" cx="${r1(cx + dx)}" cy="${r1(y(v))}" r="2.6" ` +
          `fill="#fff" stroke="#1f2933" stroke-width="1"/>`);
      });
    });
    const cx = m.left + gi * groupW + groupW / 2;
    const role = name === summary.authorizedSet ? 'authorized' : summary.scoredSets.includes(name) ? 'unauthorized' : 'unseen';
    parts.push(`<text x="${r1(cx)}" y="${r1(height - m.bottom + 18)}" class="label" text-anchor="middle">${esc(name)}</text>`,
      `<text x="${r1(cx)}" y="${r1(height - m.bottom + 33)}" class="caption" text-anchor="middle">${role}</text>`);
  });
  const cy = r1(y(chance));
  parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${cy}" y2="${cy}" class="chance"/>`,
    `<text x="${width - m.right + 6}" y="${r1(y(chance) + 4)}" class="chance-label">chance ${(100 * chance).toFixed(0)}%</text>`);
  let lx = m.left;
  const legend = MODELS.map(([key, label]) => {
    const item = `<rect x="${lx}" y="6" width="12" height="12" fill="${COLOURS[key]}"/><text x="${lx + 17}" y="16" class="legend">${esc(label)}</text>`;
    lx += 17 + 7 * label.length + 24;
    return item;
  }).join('');
  return `<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" ` +
    `aria-label="${esc(`${summary.scenario}: accuracy per set, mean ± std over seeds`)}">${legend}${parts.join('')}</svg>`;
}

function scenarioSection(result: BenchmarkResult, s: BenchmarkScenarioSummary): string {
  const rows = Object.entries(s.sets).map(([name, v]) => {
    const role = name === s.authorizedSet ? 'authorized' : s.scoredSets.includes(name) ? 'unauthorized' : 'unseen';
    return `<tr><td>${esc(name)} <span class="role">${role}</span></td><td>${v.n}</td><td>${pm(v.zeroShot)}</td><td>${pm(v.reference)}</td><td>${pm(v.protected)}</td></tr>`;
  }).join('');
  const metric = (label: string, sp: Spread | undefined, digits = 3) => sp
    ? `<tr><td>${esc(label)}</td><td>${sp.mean.toFixed(digits)} ± ${sp.std.toFixed(digits)}</td><td>${sp.values.map((v) => v.toFixed(digits)).join(' · ')}</td></tr>` : '';
  const runs = result.runs.filter((r) => r.scenario === s.scenario);
  const checks = runs.map((r) => `<tr data-seed="${r.seed}"><td>seed ${r.seed}</td><td class="${r.pass ? 'pass' : 'fail'}">${r.pass ? 'PASS' : 'FAIL'}</td><td>` +
    r.checks.map((c) => `<span class="${c.pass ? 'pass' : 'fail'}">${c.pass ? '✓' : '✗'}</span> ${esc(c.name)}: ` +
      `${c.name.includes('p <') ? c.value.toExponential(1) : pct(c.value) + '%'} ${c.op} ${c.name.includes('p <') ? c.limit.toExponential(0) : pct(c.limit) + '%'}`).join('<br>') +
    '</td></tr>').join('');
  return `<section class="scenario" data-scenario="${esc(s.scenario)}"><h2>${esc(s.scenario)} <span class="${s.pass ? 'pass' : 'fail'}">` +
    `${s.pass ? 'PASS' : 'FAIL'}</span> <span class="sub">${s.passedSeeds.length}/${runs.length} seeds</span></h2>` +
    `<div class="card">${errorBarChart(s, result.chance)}</div>` +
    `<div class="card"><table><thead><tr><th>set</th><th>n</th><th>zero-shot %</th><th>reference %</th><th>IP-CLIP %</th></tr></thead><tbody>${rows}</tbody></table>` +
    `<p class="sub">Mean ± sample standard deviation over seeds ${esc(result.seeds.join(', '))}.</p></div>` +
    `<div class="card"><table><thead><tr><th>metric</th><th>mean ± std</th><th>per seed</th></tr></thead><tbody>` +
    metric('retention vs best = max(reference, zero-shot)', s.metrics.retention) +
    metric('retention vs reference (method §7, capped at 1)', s.metrics.retentionVsReference) +
    metric('suppression (method §7)', s.metrics.suppression) +
    (s.metrics.pValue ? `<tr><td>watermark collapse p-value</td><td>max ${Math.max(...s.metrics.pValue.values).toExponential(1)}</td><td>` +
      `${s.metrics.pValue.values.map((v) => v.toExponential(1)).join(' · ')}</td></tr>` : '') +
    `</tbody></table></div>` +
    `<div class="card"><table><tbody>${checks}</tbody></table>` +
    `<p class="sub">Recipe: ${esc(Object.entries(s.recipe).map(([k, v]) => `${k} ${v}`).join(', '))}.</p></div></section>`;
}

/**
 * The benchmark as one HTML document.
 * @category Report
 */
export function renderBenchmarkPage(result: BenchmarkResult): string {
  const title = `IP-CLIP protection benchmark: ${result.authorized} authorized`;
  const verdict = result.scenarios.map((s) => `<li><span class="${s.pass ? 'pass' : 'fail'}">${s.pass ? 'PASS' : 'FAIL'}</span> ` +
    `${esc(s.scenario)}: ${s.passedSeeds.length} of ${s.passedSeeds.length + s.failedSeeds.length} seeds pass` +
    `${s.failedSeeds.length ? ` (failing: ${s.failedSeeds.join(', ')})` : ''}; ${esc(s.authorizedSet)} ${pm(s.sets[s.authorizedSet]!.protected)} %</li>`).join('');
  return htmlPage(title, `${result.data}: ${result.classNames.length} classes (chance ${pct(result.chance)} %), ${result.seeds.length} seeds, ` +
    `train fraction ${result.trainFraction}; CLIP ${result.clip.fingerprint.slice(0, 12)} (${result.clip.dtype}, ${result.clip.device}); ${Math.round(result.seconds)} s.`,
  `<div class="card"><ul class="targets">${verdict}</ul></div>
${result.scenarios.map((s) => scenarioSection(result, s)).join('\n')}`,
  `Generated by ipclip on ${result.date}. Accuracies are top-1 on held-out test splits; each seed draws its own split.`);
}

/**
 * Writes `benchmark.json` and `benchmark.html` into `dir`, each atomically (lib/core/fs.ts).
 * @category Report
 */
export async function writeBenchmark(dir: string, result: BenchmarkResult): Promise<{ json: string; html: string }> {
  return writeJsonAndPage(dir, 'benchmark', 'benchmark', result, renderBenchmarkPage(result));
}
