/**
 * Named colours for synthetic objects. Each name has a base RGB that every image jitters only slightly,
 * so the colour word in a caption stays true (a "red" object is always recognisably red).
 */

export type Rgb = [number, number, number];

/** Colour names in caption order, with their base RGB. White is left out: it vanishes on product backgrounds. */
export const PALETTE: Readonly<Record<string, Rgb>> = {
  red: [214, 40, 40],
  green: [46, 160, 67],
  blue: [37, 99, 220],
  yellow: [245, 205, 30],
  orange: [245, 130, 30],
  purple: [130, 60, 180],
  pink: [240, 120, 180],
  brown: [130, 80, 40],
  black: [25, 25, 25],
  gray: [140, 140, 140],
};

/** The palette's colour names. */
export const COLOUR_NAMES: readonly string[] = Object.keys(PALETTE);

export function clamp255(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Mixes `c` towards `target` by `t` in [0, 1]. */
export function mix(c: Rgb, target: Rgb, t: number): Rgb {
  return [0, 1, 2].map((i) => clamp255(c[i] + (target[i] - c[i]) * t)) as Rgb;
}

export const lighten = (c: Rgb, t: number): Rgb => mix(c, [255, 255, 255], t);
export const darken = (c: Rgb, t: number): Rgb => mix(c, [0, 0, 0], t);

/** Relative luminance in [0, 1] (Rec. 709 weights on gamma-encoded values: good enough for contrast choices). */
export function luma(c: Rgb): number {
  return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
}

export function hex(c: Rgb): string {
  return '#' + c.map((v) => clamp255(v).toString(16).padStart(2, '0')).join('');
}
