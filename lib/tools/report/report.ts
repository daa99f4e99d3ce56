/**
 * The HTML report of a protection run: one self-contained file (inline CSS, inline SVG charts, images as data
 * URIs, a Content-Security-Policy that forbids every network request) showing per-domain accuracies of zero-shot
 * CLIP, the unprotected reference and the protected prompt; the training curves of every loss term and the
 * learning rate; the three protection metrics; and sample images with the protected model's predictions.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import sharp from 'sharp';
import { IpclipError, check } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/fs.js';
import { LOSS_TERM_TITLES } from '../../ipclip/loss-terms.js';
import type { ImageInput } from '../../image/decode.js';
import { barChart, esc, lineChart, type LineSeries } from './svg.js';

/**
 * How a domain relates to the protection.
 * @category Report
 */
export type DomainRole = 'authorized' | 'unauthorized' | 'unseen';

/**
 * Accuracies (fractions) of one domain's test set.
 * @category Report
 */
export interface ReportDomain {
  name: string;
  role: DomainRole;
  zeroShot: number | null;
  reference: number | null;
  protected: number;
  /** Test images. */
  n?: number;
}

/**
 * One training step (or epoch) of a run: its loss terms and learning rate.
 * @category Report
 */
export interface ReportPoint {
  iteration: number;
  lr: number;
  terms: Record<string, number>;
}

/**
 * The curves of one training run.
 * @category Report
 */
export interface ReportRun {
  name: string;
  points: ReportPoint[];
}

/**
 * A sample image with the protected model's prediction.
 * @category Report
 */
export interface ReportSample {
  domain: string;
  /** A PNG as base64 (see {@link thumbnail}). */
  png: string;
  label: string;
  predicted: string;
}

/**
 * The project's metrics (method §7).
 * @category Report
 */
export interface ReportMetrics {
  retention: number;
  suppression: number;
  protection: number;
  dropA?: number;
  dropU?: number;
}

/**
 * Everything the report shows.
 * @category Report
 */
export interface ReportData {
  title: string;
  /** A line under the title (e.g. the setup). */
  subtitle?: string;
  chance: number;
  domains: ReportDomain[];
  metrics: ReportMetrics | null;
  runs: ReportRun[];
  samples: ReportSample[];
  /** Pass/fail lines shown near the top. */
  targets?: { name: string; pass: boolean; detail: string }[];
  /** Plain sentences (e.g. what happened on unseen domains). */
  notes?: string[];
  /** Settings shown in a small table. */
  settings?: Record<string, string | number | boolean>;
  /** ISO time; default now. */
  createdAt?: string;
}

/** One sentence per metric: what it means. */
export const METRIC_SENTENCES: Readonly<Record<'retention' | 'suppression' | 'protection', string>> = {
  retention: 'How much of the unprotected reference\'s accuracy the protected model keeps on the authorized domain (1 = all of it).',
  suppression: 'How far the protected model\'s accuracy on the unauthorized domain fell from the reference\'s towards chance (1 = all the way to chance).',
  protection: 'The harmonic mean of retention and suppression: high only when the model keeps the authorized domain and loses the unauthorized one at the same time.',
};

/** Colours of the three models and of the runs' curves. */
const COLOURS = { zeroShot: '#9aa5b1', reference: '#4c78a8', protected: '#e4572e' };
const RUN_COLOURS = ['#4c78a8', '#e4572e', '#54a24b', '#b279a2'];

/** Readable names of the loss terms (method §4). */
const TERM_TITLES: Readonly<Record<string, string>> = LOSS_TERM_TITLES;

/**
 * A base64 PNG thumbnail of an image (path or bytes), `size` pixels on its longer side, for
 * {@link ReportSample.png}. Small images are enlarged with nearest-neighbour so their pixels stay crisp.
 * @throws IpclipError `ERR_BAD_IMAGE` when the image cannot be read.
 * @category Report
 */
export async function thumbnail(image: ImageInput, size = 72): Promise<string> {
  check(Number.isInteger(size) && size >= 8 && size <= 512, `thumbnail size must be an integer from 8 to 512, got ${size}`);
  try {
    const source = typeof image === 'string' || image instanceof Uint8Array
      ? sharp(image)
      : sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
    const png = await source.resize(size, size, { fit: 'inside', kernel: 'nearest' }).png().toBuffer();
    return png.toString('base64');
  } catch (err) {
    throw new IpclipError('ERR_BAD_IMAGE', `cannot make a thumbnail of ${typeof image === 'string' ? image : 'an image'}: ${(err as Error).message}`, { cause: err });
  }
}

/** The stylesheet of every ipclip HTML page (the demo report and the benchmark page). */
export const REPORT_CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;background:#f7f8fa;margin:0}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d9dee4;padding-bottom:4px}
.sub{color:#52606d;margin:0 0 12px}.card{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:14px 16px;margin:10px 0}
table{border-collapse:collapse}td,th{padding:4px 10px;text-align:right;border-bottom:1px solid #eef0f3}th{font-weight:600}
td:first-child,th:first-child{text-align:left}
.targets{list-style:none;padding:0;margin:8px 0}.targets li{margin:3px 0}
.pass{color:#1a7f37;font-weight:700}.fail{color:#c62828;font-weight:700}
.metrics{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}.metric .v{font-size:28px;font-weight:700}
.metric .n{font-weight:600;color:#52606d;text-transform:uppercase;font-size:12px;letter-spacing:.04em}
.curves{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:8px}
svg.chart{width:100%;height:auto;display:block}svg .grid{stroke:#e6e9ed;stroke-width:1}svg .tick,svg .caption{font-size:11px;fill:#7b8794}
svg .label{font-size:13px;fill:#1f2933;font-weight:600}svg .value{font-size:11px;fill:#323f4b}
svg .legend{font-size:12px;fill:#323f4b}svg .chart-title{font-size:13px;font-weight:600;fill:#1f2933}
svg .chance{stroke:#c62828;stroke-dasharray:5 4;stroke-width:1.5}svg .chance-label{font-size:11px;fill:#c62828}
svg polyline{fill:none}svg .curve{stroke-width:2}svg .raw{stroke-width:1;opacity:.25}
.samples h3{font-size:14px;margin:12px 0 6px}.row{display:flex;flex-wrap:wrap;gap:8px}
figure.sample{margin:0;width:84px;text-align:center;font-size:11px}
figure.sample img{width:72px;height:72px;image-rendering:pixelated;border:3px solid;border-radius:4px}
figure.correct img{border-color:#2e7d32}figure.wrong img{border-color:#c62828}
figure.sample .mark{font-weight:700}figure.correct .mark{color:#2e7d32}figure.wrong .mark{color:#c62828}
.role{font-size:11px;color:#7b8794}.notes li{margin:4px 0}footer{color:#7b8794;font-size:12px;margin-top:28px}
`;

function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}%`;
}

/** Checks the data so a bad result object gives a clear error, not a broken page. */
function validate(d: ReportData): void {
  check(d !== null && typeof d === 'object', 'report data must be an object');
  check(typeof d.title === 'string', 'report: title must be a string');
  check(typeof d.chance === 'number' && d.chance > 0 && d.chance < 1, `report: chance must be in (0, 1), got ${String(d.chance)}`);
  check(Array.isArray(d.domains) && d.domains.length > 0, 'report: domains must be a non-empty array', 'ERR_EMPTY_INPUT');
  for (const dom of d.domains) {
    check(typeof dom.name === 'string' && ['authorized', 'unauthorized', 'unseen'].includes(dom.role), `report: bad domain entry ${JSON.stringify(dom.name)}`);
    for (const k of ['zeroShot', 'reference', 'protected'] as const) {
      const v = dom[k];
      check(v === null || (k !== 'protected' && v === undefined) || (typeof v === 'number' && v >= 0 && v <= 1),
        `report: ${dom.name}.${k} must be an accuracy in [0, 1]${k === 'protected' ? '' : ' or null'}`);
    }
  }
  check(Array.isArray(d.runs), 'report: runs must be an array');
  check(Array.isArray(d.samples), 'report: samples must be an array');
  for (const s of d.samples) check(typeof s.png === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(s.png), `report: a sample of ${s.domain} is not base64 PNG data`);
}

function barsSection(d: ReportData): string {
  const captions: Record<DomainRole, string> = { authorized: 'authorized', unauthorized: 'unauthorized', unseen: 'never seen in training' };
  const groups = d.domains.map((x) => ({ name: x.name, caption: captions[x.role] }));
  const svg = barChart(groups, [
    { name: 'zero-shot CLIP', colour: COLOURS.zeroShot, values: d.domains.map((x) => x.zeroShot ?? null) },
    { name: 'reference (unprotected)', colour: COLOURS.reference, values: d.domains.map((x) => x.reference ?? null) },
    { name: 'IP-CLIP (protected)', colour: COLOURS.protected, values: d.domains.map((x) => x.protected) },
  ], { chance: d.chance, title: 'test accuracy per domain' });
  const rows = d.domains.map((x) => `<tr data-domain="${esc(x.name)}"><td>${esc(x.name)} <span class="role">${esc(captions[x.role])}</span></td>` +
    `<td>${x.n ?? ''}</td><td>${pct(x.zeroShot)}</td><td>${pct(x.reference)}</td><td>${pct(x.protected)}</td></tr>`).join('');
  return `<section id="accuracy"><h2>Accuracy per domain (test splits)</h2><div class="card">${svg}</div>` +
    `<div class="card"><table><thead><tr><th>domain</th><th>images</th><th>zero-shot</th><th>reference</th><th>protected</th></tr></thead>` +
    `<tbody>${rows}</tbody></table></div></section>`;
}

function metricsSection(m: ReportMetrics | null): string {
  if (!m) return '<section id="metrics"><h2>Protection metrics</h2><p>No reference run: the metrics need one.</p></section>';
  const cards = (['retention', 'suppression', 'protection'] as const).map((k) =>
    `<div class="card metric" data-metric="${k}"><div class="n">${k}</div><div class="v">${m[k].toFixed(3)}</div><div>${esc(METRIC_SENTENCES[k])}</div></div>`).join('');
  const drops = m.dropA !== undefined && m.dropU !== undefined
    ? `<p class="sub">Raw drops from the reference: authorized ${pct(m.dropA)}, unauthorized ${pct(m.dropU)} (accuracy points).</p>` : '';
  return `<section id="metrics"><h2>Protection metrics</h2><div class="metrics">${cards}</div>${drops}</section>`;
}

/** At most `max` points, evenly picked (keeps the file small for long runs). */
function thin<T>(points: T[], max = 600): T[] {
  if (points.length <= max) return points;
  const step = points.length / max;
  return Array.from({ length: max }, (_, i) => points[Math.floor(i * step)]!);
}

function curvesSection(runs: ReportRun[]): string {
  const terms = Object.keys(TERM_TITLES).filter((k) => runs.some((run) => run.points.some((p) => Number.isFinite(p.terms[k]) && p.terms[k] !== 0)));
  const extra = [...new Set(runs.flatMap((run) => run.points.flatMap((p) => Object.keys(p.terms))))].filter((k) => !(k in TERM_TITLES) &&
    runs.some((run) => run.points.some((p) => Number.isFinite(p.terms[k]) && p.terms[k] !== 0)));
  const series = (key: string, pick: (p: ReportPoint) => number | undefined): LineSeries[] => runs.map((run, i) => ({
    name: run.name, colour: RUN_COLOURS[i % RUN_COLOURS.length]!,
    // A run only has the terms its scenario uses (the reference has no CE_U): those lines are left out.
    points: thin(run.points).map((p) => ({ x: p.iteration, y: pick(p) ?? NaN })).filter((p) => Number.isFinite(p.y)),
  })).filter((s) => s.points.length > 0 && (key === 'lr' || s.points.some((p) => p.y !== 0)));
  const charts = [...terms, ...extra].map((k) => lineChart(TERM_TITLES[k] ?? k, series(k, (p) => p.terms[k]), { key: k }));
  charts.push(lineChart('learning rate', series('lr', (p) => p.lr), { key: 'lr' }));
  if (runs.length === 0 || runs.every((r) => r.points.length === 0)) {
    return '<section id="curves"><h2>Training curves</h2><p>No training history.</p></section>';
  }
  return `<section id="curves"><h2>Training curves</h2><p class="sub">Every loss term and the learning rate per iteration ` +
    `(faint: raw, bold: moving average). Negative totals are expected: the protection maximises CE on the unauthorized stream.</p>` +
    `<div class="curves">${charts.map((c) => `<div class="card">${c}</div>`).join('')}</div></section>`;
}

function samplesSection(d: ReportData): string {
  if (d.samples.length === 0) return '';
  const domains = [...new Set(d.samples.map((s) => s.domain))];
  const roleOf = new Map(d.domains.map((x) => [x.name, x.role]));
  const rows = domains.map((dom) => {
    const items = d.samples.filter((s) => s.domain === dom);
    const right = items.filter((s) => s.label === s.predicted).length;
    const figs = items.map((s) => {
      const ok = s.label === s.predicted;
      return `<figure class="sample ${ok ? 'correct' : 'wrong'}"><img alt="${esc(`${s.label} (${dom})`)}" src="data:image/png;base64,${s.png}">` +
        `<figcaption><span class="mark">${ok ? '✓' : '✗'}</span> ${esc(s.predicted)}${ok ? '' : `<br><span class="role">is ${esc(s.label)}</span>`}</figcaption></figure>`;
    }).join('');
    return `<div class="domain-samples" data-domain="${esc(dom)}"><h3>${esc(dom)} <span class="role">${esc(roleOf.get(dom) ?? '')}, ` +
      `${right}/${items.length} correct</span></h3><div class="row">${figs}</div></div>`;
  }).join('');
  return `<section id="samples" class="samples"><h2>Sample predictions of the protected model</h2>` +
    `<p class="sub">Green ✓: correct; red ✗: wrong (the true class below).</p><div class="card">${rows}</div></section>`;
}

/**
 * The report as one HTML document (no scripts, no external resources).
 * @category Report
 */
export function renderReport(data: ReportData): string {
  validate(data);
  const targets = data.targets && data.targets.length > 0
    ? `<ul class="targets">${data.targets.map((t) => `<li data-target="${esc(t.name)}"><span class="${t.pass ? 'pass' : 'fail'}">${t.pass ? 'PASS' : 'FAIL'}</span> ` +
      `${esc(t.name)}: ${esc(t.detail)}</li>`).join('')}</ul>` : '';
  const notes = data.notes && data.notes.length > 0 ? `<ul class="notes">${data.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '';
  const settings = data.settings && Object.keys(data.settings).length > 0
    ? `<section id="settings"><h2>Settings</h2><div class="card"><table><tbody>${Object.entries(data.settings)
      .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(String(v))}</td></tr>`).join('')}</tbody></table></div></section>` : '';
  return htmlPage(data.title, data.subtitle, `${targets || notes ? `<div class="card">${targets}${notes}</div>` : ''}
${barsSection(data)}
${metricsSection(data.metrics)}
${curvesSection(data.runs)}
${samplesSection(data)}
${settings}`,
  `Generated by ipclip on ${data.createdAt ?? new Date().toISOString()}. Accuracies are top-1 on held-out test splits; chance is ${pct(data.chance)}.`);
}

/**
 * A self-contained report page (no scripts, nothing fetched: the CSP allows only inline styles and data: images)
 * with the report styles: `title` as title and heading, an optional subtitle, `body` (HTML) and a footer line (text).
 * The demo report, the benchmark page and the attack page are all one of these.
 */
export function htmlPage(title: string, subtitle: string | undefined, body: string, footer: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${REPORT_CSS}</style></head>
<body><main>
<h1>${esc(title)}</h1>${subtitle ? `<p class="sub">${esc(subtitle)}</p>` : ''}
${body}
<footer>${esc(footer)}</footer>
</main></body></html>
`;
}

/**
 * Writes {@link renderReport}'s HTML to `file` (folders created; written to a temporary file, then renamed).
 * @category Report
 */
/**
 * Writes `<name>.json` (`json`; non-finite numbers become null) and `<name>.html` into `dir`, each atomically: the
 * shape of the benchmark's and the attack suite's outputs. `what` names them in errors.
 */
export async function writeJsonAndPage(dir: string, name: string, what: string, json: unknown, html: string): Promise<{ json: string; html: string }> {
  const out = { json: resolve(dir, `${name}.json`), html: resolve(dir, `${name}.html`) };
  try {
    await mkdir(dirname(out.json), { recursive: true });
  } catch (err) {
    throw new IpclipError('ERR_IO', `cannot write the ${what} into ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // JSON.stringify writes NaN and ±Infinity as null.
  await writeFileAtomic(out.json, `${JSON.stringify(json, null, 2)}\n`, `the ${what}`);
  await writeFileAtomic(out.html, html, `the ${what} page`);
  return out;
}

export async function writeReport(file: string, data: ReportData): Promise<string> {
  const html = renderReport(data);
  const target = resolve(file);
  try {
    await mkdir(dirname(target), { recursive: true });
  } catch (err) {
    throw new IpclipError('ERR_IO', `cannot write the report ${file}: ${(err as Error).message}`, { cause: err });
  }
  await writeFileAtomic(target, html, 'the report');
  return target;
}
