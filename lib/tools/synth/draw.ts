/**
 * Per-domain drawing. Each domain shares the object outlines (shapes.ts) but differs in style only:
 * photo (textured background, shaded object, cast shadow), clipart (flat fill, thick dark outline, plain
 * light background), sketch (graphite multi-stroke outline on paper, no fill) and product (centred on
 * white, soft drop shadow). All randomness comes from the `rng` passed in, in a fixed order.
 */
import sharp from 'sharp';
import type { Rng } from '../../core/rng.js';
import { hsl, paperBackground, photoBackground } from './background.js';
import { COLOUR_NAMES, PALETTE, darken, hex, lighten, luma, mix, clamp255, type Rgb } from './palette.js';
import { bounds, densify, fmt, pathData, shapeContours, transform, type Contour } from './shapes.js';

/**
 * The four styles.
 * @category SynthDomains
 */
export type SynthDomain = 'photo' | 'clipart' | 'sketch' | 'product';

/** A rendered image and the colour name shown in it (`null` when the style shows no colour: sketch). */
export interface DrawnImage {
  png: Buffer;
  colour: string | null;
}

/** How far each class may be rotated (degrees either way); direction-free shapes turn freely. */
const MAX_ROTATION: Record<string, number> = { arrow: 180, moon: 180, square: 15, triangle: 20, heart: 20 };
const DEFAULT_ROTATION = 30;

interface Placement {
  /** Half-extent of the object in pixels before rotation. */
  scale: number;
  rotation: number;
  /** Where the shape's origin landed (the rotation centre). */
  origin: [number, number];
  contours: Contour[];
}

/**
 * Picks scale, rotation and position, then moves the object so that its rotated bounding box keeps at
 * least `margin` pixels from every edge (the object is never cut off).
 */
function place(rng: Rng, cls: string, size: number, scaleLo: number, scaleHi: number, maxShift: number, margin: number, maxRot?: number): Placement {
  const scale = rng.uniform(scaleLo, scaleHi) * size;
  const lim = maxRot ?? MAX_ROTATION[cls] ?? DEFAULT_ROTATION;
  const rotation = rng.uniform(-lim, lim);
  const shape = shapeContours(cls);
  let contours = transform(shape, scale, rotation, 0, 0);
  let [x0, y0, x1, y1] = bounds(contours);
  // Shrink if the rotated object would not fit inside the margins at all.
  const fit = Math.min(1, (size - 2 * margin) / Math.max(x1 - x0, y1 - y0));
  if (fit < 1) {
    contours = transform(shape, scale * fit, rotation, 0, 0);
    [x0, y0, x1, y1] = bounds(contours);
  }
  const c = size / 2;
  const tx = clampShift(rng.uniform(-maxShift, maxShift) * size, margin - (c + x0), size - margin - (c + x1));
  const ty = clampShift(rng.uniform(-maxShift, maxShift) * size, margin - (c + y0), size - margin - (c + y1));
  return { scale: scale * fit, rotation, origin: [c + tx, c + ty], contours: transform(shape, scale * fit, rotation, c + tx, c + ty) };
}

function clampShift(v: number, lo: number, hi: number): number {
  if (lo > hi) return (lo + hi) / 2;
  return Math.min(hi, Math.max(lo, v));
}

function pickColour(rng: Rng, jitter: number): { name: string; rgb: Rgb } {
  const name = COLOUR_NAMES[rng.int(COLOUR_NAMES.length)];
  const base = PALETTE[name];
  const rgb = base.map((v) => clamp255(v + rng.uniform(-jitter, jitter))) as Rgb;
  return { name, rgb };
}

function svgDoc(size: number, body: string): Buffer {
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">${body}</svg>`,
  );
}

async function compose(size: number, background: Buffer, svg: Buffer): Promise<Buffer> {
  const flat = await sharp(background, { raw: { width: size, height: size, channels: 3 } })
    .composite([{ input: svg, left: 0, top: 0 }])
    .raw()
    .toBuffer({ resolveWithObject: true });
  return encodeRgb(flat.data, size, flat.info.channels);
}

/** Encodes raw pixels as an RGB PNG (no alpha: every background is opaque). */
async function encodeRgb(data: Buffer, size: number, channels: number): Promise<Buffer> {
  const img = sharp(data, { raw: { width: size, height: size, channels: channels as 1 | 2 | 3 | 4 } });
  return (channels === 4 ? img.removeAlpha() : img).png({ compressionLevel: 9, adaptiveFiltering: false }).toBuffer();
}

async function renderSvg(size: number, svg: Buffer): Promise<Buffer> {
  const { data, info } = await sharp(svg).raw().toBuffer({ resolveWithObject: true });
  return encodeRgb(data, size, info.channels);
}

/** Photo: textured gradient background chosen to contrast with the object, shaded object with a cast shadow. */
async function drawPhoto(cls: string, rng: Rng, size: number): Promise<DrawnImage> {
  const { name, rgb } = pickColour(rng, 14);
  const { contours } = place(rng, cls, size, 0.26, 0.36, 0.12, size * 0.05);
  // Light object → darker background and vice versa, so every colour stays visible.
  const dark = luma(rgb) > 0.45;
  const hue = rng.uniform(0, 360);
  const sat = rng.uniform(0.08, 0.45);
  const l0 = dark ? rng.uniform(0.12, 0.3) : rng.uniform(0.62, 0.85);
  const from = hsl(hue, sat, l0);
  const to = hsl(hue + rng.uniform(-40, 40), sat, Math.min(0.92, Math.max(0.06, l0 + rng.uniform(-0.15, 0.15))));
  const background = photoBackground(rng, size, from, to, rng.uniform(18, 36), rng.uniform(3, 7));
  const d = pathData(contours);
  const sh = size * rng.uniform(0.025, 0.05);
  const shAngle = rng.uniform(0.25, 0.75) * Math.PI; // light from above: shadows fall downwards
  const [x0, y0, x1, y1] = bounds(contours);
  const hx = rng.uniform(0.25, 0.45), hy = rng.uniform(0.2, 0.4);
  const body =
    `<defs>` +
    `<filter id="b" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="${fmt(size * 0.03)}"/></filter>` +
    `<filter id="h" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="${fmt(size * 0.04)}"/></filter>` +
    `<radialGradient id="g" cx="${fmt(hx)}" cy="${fmt(hy)}" r="0.85">` +
    `<stop offset="0" stop-color="${hex(lighten(rgb, 0.45))}"/><stop offset="0.45" stop-color="${hex(rgb)}"/>` +
    `<stop offset="1" stop-color="${hex(darken(rgb, 0.45))}"/></radialGradient>` +
    `<clipPath id="c"><path d="${d}" fill-rule="evenodd"/></clipPath>` +
    `</defs>` +
    `<path d="${d}" fill-rule="evenodd" fill="#000" opacity="${fmt(rng.uniform(0.3, 0.5))}" filter="url(#b)" ` +
    `transform="translate(${fmt(sh * Math.cos(shAngle))} ${fmt(sh * Math.sin(shAngle))})"/>` +
    `<path d="${d}" fill-rule="evenodd" fill="url(#g)" stroke="${hex(darken(rgb, 0.5))}" stroke-width="${fmt(size * 0.012)}"/>` +
    // A soft specular highlight, clipped to the object, sells the "lit 3-D object" look.
    `<g clip-path="url(#c)"><ellipse cx="${fmt(x0 + (x1 - x0) * hx)}" cy="${fmt(y0 + (y1 - y0) * hy)}" ` +
    `rx="${fmt((x1 - x0) * 0.14)}" ry="${fmt((y1 - y0) * 0.09)}" fill="#fff" opacity="0.55" filter="url(#h)"/></g>`;
  return { png: await compose(size, background, svgDoc(size, body)), colour: name };
}

const CLIPART_BACKGROUNDS: Rgb[] = [[255, 255, 255], [250, 246, 232], [236, 244, 255], [255, 240, 240], [238, 250, 238], [246, 240, 252]];

/** Clipart: one flat light background, one flat fill, one thick dark outline. */
async function drawClipart(cls: string, rng: Rng, size: number): Promise<DrawnImage> {
  const { name, rgb } = pickColour(rng, 0);
  const width = size * rng.uniform(0.045, 0.065);
  // The outline is centred on the edge, so half of it lies outside the shape: keep that inside too.
  const { contours } = place(rng, cls, size, 0.27, 0.36, 0.1, size * 0.05 + width / 2);
  const bg = CLIPART_BACKGROUNDS[rng.int(CLIPART_BACKGROUNDS.length)];
  const outline = hex(mix([20, 20, 28], rgb, rng.uniform(0, 0.15)));
  const body =
    `<rect width="${size}" height="${size}" fill="${hex(bg)}"/>` +
    `<path d="${pathData(contours)}" fill-rule="evenodd" fill="${hex(rgb)}" stroke="${outline}" ` +
    `stroke-width="${fmt(width)}" stroke-linejoin="round"/>`;
  return { png: await renderSvg(size, svgDoc(size, body)), colour: name };
}

/**
 * Sketch: graphite on off-white paper. Each outline is traced 2–3 times, each pass slightly shifted,
 * resized and wobbly, and overshooting its start the way a quick pencil line does. No fill and no colour.
 */
async function drawSketch(cls: string, rng: Rng, size: number): Promise<DrawnImage> {
  const { scale, rotation, origin: [cx, cy] } = place(rng, cls, size, 0.27, 0.36, 0.1, size * 0.08);
  const shape = shapeContours(cls);
  const passes = rng.intBetween(2, 3);
  const grey = rng.intBetween(35, 75);
  const ink = hex([grey, grey, grey]);
  let strokes = '';
  for (let p = 0; p < passes; p++) {
    const s = scale * rng.uniform(0.96, 1.04);
    const moved = transform(shape, s, rotation + rng.uniform(-3, 3),
      cx + rng.uniform(-0.02, 0.02) * size, cy + rng.uniform(-0.02, 0.02) * size);
    for (const contour of moved) {
      const pts = densify(contour, size * 0.06).map(([x, y]) => [x + rng.normal() * size * 0.006, y + rng.normal() * size * 0.006]);
      const overshoot = rng.intBetween(1, 3);
      const start = rng.int(pts.length);
      const seq: number[][] = [];
      for (let k = 0; k <= pts.length + overshoot; k++) seq.push(pts[(start + k) % pts.length]);
      strokes += `<path d="M${seq.map(([x, y]) => `${fmt(x)} ${fmt(y)}`).join('L')}" fill="none" stroke="${ink}" ` +
        `stroke-width="${fmt(size * rng.uniform(0.016, 0.026))}" stroke-opacity="${fmt(rng.uniform(0.55, 0.85))}" ` +
        `stroke-linecap="round" stroke-linejoin="round"/>`;
    }
  }
  const tone = rng.intBetween(238, 248);
  const paper: Rgb = [tone, tone - 1, tone - 4];
  const background = paperBackground(rng, size, paper, rng.uniform(1.5, 3));
  return { png: await compose(size, background, svgDoc(size, strokes)), colour: null };
}

/** Product: centred on pure white, clean flat colour with a faint top-down gradient, soft drop shadow. */
async function drawProduct(cls: string, rng: Rng, size: number): Promise<DrawnImage> {
  const { name, rgb } = pickColour(rng, 6);
  const maxRot = Math.min(MAX_ROTATION[cls] ?? DEFAULT_ROTATION, 15);
  // A wide margin keeps the shadow's blur off the border, which stays pure white.
  const { contours } = place(rng, cls, size, 0.25, 0.3, 0.02, size * 0.16, cls === 'arrow' ? 180 : maxRot);
  const d = pathData(contours);
  const drop = size * rng.uniform(0.03, 0.05);
  const body =
    `<defs><filter id="s" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="${fmt(size * 0.025)}"/></filter>` +
    `<linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${hex(lighten(rgb, 0.12))}"/>` +
    `<stop offset="1" stop-color="${hex(darken(rgb, 0.1))}"/></linearGradient></defs>` +
    `<rect width="${size}" height="${size}" fill="#fff"/>` +
    `<path d="${d}" fill-rule="evenodd" fill="#000" opacity="0.28" filter="url(#s)" transform="translate(${fmt(drop * 0.4)} ${fmt(drop)})"/>` +
    `<path d="${d}" fill-rule="evenodd" fill="url(#g)"/>`;
  return { png: await renderSvg(size, svgDoc(size, body)), colour: name };
}

/** Renders one image of `cls` in `domain`. */
export function drawDomain(domain: SynthDomain, cls: string, rng: Rng, size: number): Promise<DrawnImage> {
  switch (domain) {
    case 'photo': return drawPhoto(cls, rng, size);
    case 'clipart': return drawClipart(cls, rng, size);
    case 'sketch': return drawSketch(cls, rng, size);
    case 'product': return drawProduct(cls, rng, size);
  }
}
