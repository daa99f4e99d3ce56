/**
 * The attack suite in HTML (no scripts, no external resources): a bar chart of the recovered fraction per attack
 * and budget, a table per attack family, one plain sentence per row, and the declared selection rule and
 * recovery reference. {@link renderAttackSection} is the section alone (for a larger report);
 * {@link renderAttackPage} wraps it in a page; {@link writeAttackReport} writes attack.json and attack.html.
 */
import { ATTACK_FAMILIES, type AttackReport, type AttackRow, type SeedSpread } from '../../ipclip/attacks/index.js';
import { htmlPage, writeJsonAndPage } from './report.js';
import { barChart, esc } from './svg.js';

const pct = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}`);
/** A percentage cell, with ± the sample std over the seeds of a merged report. */
const pctSpread = (x: number, s: SeedSpread | undefined) => (s && s.values.length > 1 ? `${pct(x)} ± ${(100 * s.std).toFixed(1)}` : pct(x));

const FAMILY_TITLES: Record<AttackRow['attack'], string> = {
  'zero-shot': 'The zero-shot floor', 'source-finetune': 'Source fine-tuning (labelled authorized data)',
  'target-finetune': 'Target fine-tuning (labelled unauthorized data)', 'source-free': 'Source-free adaptation (unlabelled unauthorized data)',
  style: 'Style disguise (black box, no training)',
};

/** A short name of a row for the chart: variant and budget. */
export function rowLabel(r: AttackRow): string {
  const budget = r.budget.kind === 'fraction' ? ` ${+(100 * r.budget.value).toFixed(1)}%` : r.budget.kind === 'k' ? ` k=${r.budget.value}` : '';
  return `${r.variant}${budget}`;
}

/**
 * The attack section: chart, per-family tables, sentences. Every bar is `<rect class="bar" data-group=…>` (the
 * row label) with `data-value` the recovered fraction.
 * @category Report
 */
export function renderAttackSection(r: AttackReport): string {
  const { authorized: a, unauthorized: u } = r.domains;
  const rows = r.rows.filter((x) => x.attack !== 'zero-shot');
  const chart = rows.length > 0 ? barChart(
    rows.map((x) => ({ name: rowLabel(x), caption: x.attack })),
    [{ name: `recovered fraction of the way from protected to zero-shot on ${u}`, colour: '#e07a1f', values: rows.map((x) => x.recovered) }],
    { width: Math.max(760, 90 * rows.length), title: 'recovered fraction per attack and budget' },
  ) : '';
  const tables = ATTACK_FAMILIES.map((family) => {
    const fr = r.rows.filter((x) => x.attack === family);
    if (fr.length === 0) return '';
    const fresh = fr.some((x) => x.fresh);
    const own = fr.some((x) => x.ownership);
    const head = ['variant', 'budget', `${a} before %`, `${a} after %`, `${u} before %`, `${u} after %`, 'recovered', ...(fresh ? ['fresh prompt %', 'advantage (points)'] : []),
      ...(fr.some((x) => x.zeroShotAfter !== undefined) ? ['zero-shot on disguised %'] : []), ...(own ? ['ownership after'] : []), 'steps', 'seconds'];
    const body = fr.map((x) => `<tr data-attack="${esc(x.attack)}" data-variant="${esc(x.variant)}"><td>${esc(x.variant)}</td><td>${esc(rowLabel(x).slice(x.variant.length).trim() || '–')}` +
      `${x.budget.images ? ` (${x.budget.images}${x.budget.labelled ? ' labelled' : ''})` : ''}</td>` +
      `<td>${pctSpread(x.before.authorized, x.spread?.before.authorized)}</td><td>${pctSpread(x.after.authorized, x.spread?.after.authorized)}</td>` +
      `<td>${pctSpread(x.before.unauthorized, x.spread?.before.unauthorized)}</td><td>${pctSpread(x.after.unauthorized, x.spread?.after.unauthorized)}</td>` +
      `<td>${x.recovered === null ? '–' : x.recovered.toFixed(2) + (x.spread?.recovered && x.spread.seeds.length > 1 ? ` ± ${x.spread.recovered.std.toFixed(2)}` : '')}</td>` +
      (fresh ? `<td>${pct(x.fresh?.unauthorized)}</td><td>${x.advantage === undefined ? '–' : (100 * x.advantage).toFixed(1)}</td>` : '') +
      (x.zeroShotAfter !== undefined ? `<td>${pct(x.zeroShotAfter)}</td>` : '') +
      (own ? `<td>${x.ownership ? (x.ownership.after.supported ? 'supported' : 'not supported') : '–'}</td>` : '') +
      `<td>${x.steps}</td><td>${x.seconds.toFixed(1)}</td></tr>`).join('');
    return `<div class="card attack-family" data-family="${esc(family)}"><h3>${esc(FAMILY_TITLES[family])}</h3>` +
      `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>` +
      `<ul class="notes">${fr.map((x) => `<li class="sentence">${esc(x.sentence)}</li>`).join('')}</ul></div>`;
  }).join('');
  return `<section class="attacks"><h2>Attacks: does the barrier hold?</h2>` +
    `<p class="sub">${esc(`Protected prompt: ${a} ${pct(r.protected.authorized)} %, ${u} ${pct(r.protected.unauthorized)} %; zero-shot CLIP: ` +
      `${a} ${pct(r.zeroShot.authorized)} %, ${u} ${pct(r.zeroShot.unauthorized)} % (chance ${pct(r.chance)} %). recovered = (after − before) / ` +
      `(${r.recoveryReference} − before): 0 the attack gained nothing, 1 it reached zero-shot CLIP.`)}</p>` +
    (chart ? `<div class="card">${chart}</div>` : '') + tables +
    `<p class="sub">${esc(`Selection of training attacks: ${r.selectionRule}. Budgets: ${Object.entries(r.budgets).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join('/') : v}`).join(', ')}. ` +
      `Images: ${Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(', ')}.`)}</p></section>`;
}

/**
 * The attack suite as one HTML document.
 * @category Report
 */
export function renderAttackPage(r: AttackReport): string {
  const title = `IP-CLIP under attack: ${r.domains.authorized} authorized, ${r.domains.unauthorized} attacked`;
  return htmlPage(title, `CLIP ${r.clip.fingerprint.slice(0, 12)} (${r.clip.dtype}, ${r.clip.device}); ` +
    `${r.seeds && r.seeds.length > 1 ? `seeds ${r.seeds.join(', ')} (means ± sample std)` : `seed ${r.seed}`}; ${Math.round(r.seconds)} s.`,
    renderAttackSection(r), `Generated by ipclip on ${r.date}. Accuracies are top-1 on held-out test splits.`);
}

/**
 * Writes `attack.json` and `attack.html` into `dir`, each atomically.
 * @category Report
 */
export async function writeAttackReport(dir: string, r: AttackReport): Promise<{ json: string; html: string }> {
  return writeJsonAndPage(dir, 'attack', 'attack report', r, renderAttackPage(r));
}
