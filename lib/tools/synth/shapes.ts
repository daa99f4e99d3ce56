/**
 * Object outlines for the synthetic dataset. Every class is a list of closed contours (polygons) in unit
 * coordinates, normalised so that its bounding box is centred on the origin with half-extent 1. Keeping
 * shapes as points (not SVG primitives) lets every domain reuse them: filled with `evenodd` for
 * photo/clipart/product, and re-drawn as jittered polylines for sketch.
 */

/** A point `[x, y]`; y grows downwards as in SVG. */
export type Point = [number, number];
/** One closed outline. */
export type Contour = Point[];

function circle(r: number, n = 96, cx = 0, cy = 0): Contour {
  const pts: Contour = [];
  for (let i = 0; i < n; i++) {
    const a = (2 * Math.PI * i) / n;
    pts.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  }
  return pts;
}

function regular(n: number, r: number, startDeg: number): Contour {
  const pts: Contour = [];
  for (let i = 0; i < n; i++) {
    const a = ((startDeg + (360 * i) / n) * Math.PI) / 180;
    pts.push([r * Math.cos(a), r * Math.sin(a)]);
  }
  return pts;
}

function star(points: number, outer: number, inner: number): Contour {
  const pts: Contour = [];
  for (let i = 0; i < 2 * points; i++) {
    const a = -Math.PI / 2 + (Math.PI * i) / points;
    const r = i % 2 === 0 ? outer : inner;
    pts.push([r * Math.cos(a), r * Math.sin(a)]);
  }
  return pts;
}

/** The classic parametric heart (x = 16 sin³t, y = 13 cos t − 5 cos 2t − 2 cos 3t − cos 4t), flipped for SVG. */
function heart(n = 96): Contour {
  const pts: Contour = [];
  for (let i = 0; i < n; i++) {
    const t = (2 * Math.PI * i) / n;
    const x = 16 * Math.sin(t) ** 3;
    const y = 13 * Math.cos(t) - 5 * Math.cos(2 * t) - 2 * Math.cos(3 * t) - Math.cos(4 * t);
    pts.push([x, -y]);
  }
  return pts;
}

/** A crescent: the part of circle A (centre 0, radius ra) outside circle B (centre (d, 0), radius rb). */
function crescent(ra: number, rb: number, d: number, n = 64): Contour {
  // Intersection of the two circles: x = (d² + ra² − rb²) / 2d, y = ±sqrt(ra² − x²).
  const ix = (d * d + ra * ra - rb * rb) / (2 * d);
  const iy = Math.sqrt(ra * ra - ix * ix);
  const a0 = Math.atan2(-iy, ix); // top intersection on A
  const a1 = Math.atan2(iy, ix);  // bottom intersection on A
  const b0 = Math.atan2(iy, ix - d);
  const b1 = Math.atan2(-iy, ix - d);
  const pts: Contour = [];
  // Outer arc: from the top intersection the long way round (through the left) to the bottom one.
  const outerSpan = 2 * Math.PI - (a1 - a0);
  for (let i = 0; i <= n; i++) {
    const a = a0 - (outerSpan * i) / n;
    pts.push([ra * Math.cos(a), ra * Math.sin(a)]);
  }
  // Inner arc on B: from the bottom intersection back to the top, through B's left side.
  let span = b1 - b0;
  if (span < 0) span += 2 * Math.PI;
  for (let i = 1; i < n; i++) {
    const a = b0 + (span * i) / n;
    pts.push([d + rb * Math.cos(a), rb * Math.sin(a)]);
  }
  return pts;
}

/** A flower-like outline r(θ) = 0.75 + 0.25 |cos(2.5 θ)| with five round petals. */
function flower(n = 120): Contour {
  const pts: Contour = [];
  for (let i = 0; i < n; i++) {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    const r = 0.6 + 0.4 * Math.abs(Math.cos(2.5 * (a + Math.PI / 2)));
    pts.push([r * Math.cos(a), r * Math.sin(a)]);
  }
  return pts;
}

/** A teardrop: a circle at the bottom whose tangents meet at a point at the top. */
function droplet(n = 72): Contour {
  const r = 0.6;
  const cy = 0.35;
  const tip: Point = [0, -1];
  // Tangent points from the tip to the circle: angle from the centre where the tangent touches.
  const dist = cy - tip[1];
  const phi = Math.acos(r / dist); // angle between centre→tip and centre→tangent point
  const pts: Contour = [tip];
  const start = -Math.PI / 2 + phi;
  const end = -Math.PI / 2 - phi + 2 * Math.PI;
  for (let i = 0; i <= n; i++) {
    const a = start + ((end - start) * i) / n;
    pts.push([r * Math.cos(a), cy + r * Math.sin(a)]);
  }
  return pts;
}

/** Raw (un-normalised) contours per class. Orientation conventions: arrow points right, moon opens right. */
const RAW: Record<string, () => Contour[]> = {
  circle: () => [circle(1)],
  square: () => [[[-1, -1], [1, -1], [1, 1], [-1, 1]]],
  triangle: () => [regular(3, 1, -90)],
  star: () => [star(5, 1, 0.42)],
  heart: () => [heart()],
  arrow: () => [[[-1, -0.2], [0.15, -0.2], [0.15, -0.62], [1, 0], [0.15, 0.62], [0.15, 0.2], [-1, 0.2]]],
  cross: () => [[
    [-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3],
    [0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3],
  ]],
  ring: () => [circle(1), circle(0.58)],
  moon: () => [crescent(1, 0.82, 0.5)],
  lightning: () => [[[0.25, -1], [-0.55, 0.12], [-0.06, 0.12], [-0.3, 1], [0.55, -0.18], [0.06, -0.18], [0.35, -1]]],
  hexagon: () => [regular(6, 1, 0)],
  droplet: () => [droplet()],
  flower: () => [flower()],
};

/** Every class this module can draw (the default dataset uses the first ten). */
export const SHAPE_NAMES: readonly string[] = Object.keys(RAW);

const cache = new Map<string, Contour[]>();

/** Contours of `cls`, centred on the origin with bounding-box half-extent exactly 1. */
export function shapeContours(cls: string): Contour[] {
  let c = cache.get(cls);
  if (!c) {
    const make = RAW[cls];
    if (!make) throw new Error(`no shape for ${cls}`);
    const raw = make();
    const all = raw.flat();
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
    const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const half = Math.max(Math.max(...xs) - cx, Math.max(...ys) - cy);
    c = raw.map((contour) => contour.map(([x, y]) => [(x - cx) / half, (y - cy) / half] as Point));
    cache.set(cls, c);
  }
  return c;
}

/** Rotates (degrees), scales and translates contours. */
export function transform(contours: Contour[], scale: number, rotDeg: number, tx: number, ty: number): Contour[] {
  const a = (rotDeg * Math.PI) / 180;
  const cos = Math.cos(a);
  const sin = Math.sin(a);
  return contours.map((c) => c.map(([x, y]) => [tx + scale * (x * cos - y * sin), ty + scale * (x * sin + y * cos)] as Point));
}

/** Axis-aligned bounds `[minX, minY, maxX, maxY]` of contours. */
export function bounds(contours: Contour[]): [number, number, number, number] {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const c of contours) for (const [x, y] of c) {
    if (x < x0) x0 = x; if (x > x1) x1 = x;
    if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}

/** SVG path data for closed contours (use with `fill-rule="evenodd"` so rings get their hole). */
export function pathData(contours: Contour[]): string {
  return contours.map((c) => 'M' + c.map(([x, y]) => `${fmt(x)} ${fmt(y)}`).join('L') + 'Z').join('');
}

/** Fixed-precision numbers so the SVG text (and so the PNG) is identical on every platform. */
export function fmt(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

/**
 * Resamples a closed contour so no segment is longer than `step` (same units), keeping corners.
 * Sketch strokes need many points to wobble along straight edges.
 */
export function densify(contour: Contour, step: number): Contour {
  const out: Contour = [];
  for (let i = 0; i < contour.length; i++) {
    const [ax, ay] = contour[i];
    const [bx, by] = contour[(i + 1) % contour.length];
    const n = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / step));
    for (let k = 0; k < n; k++) out.push([ax + ((bx - ax) * k) / n, ay + ((by - ay) * k) / n]);
  }
  return out;
}
