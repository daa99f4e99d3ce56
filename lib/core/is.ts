/**
 * The one validation vocabulary of the TypeScript layer (after sharp's `lib/is`). Predicates (`is.*`) answer
 * yes or no; assertions (`assert*`) throw an {@link IpclipError} `ERR_INVALID_ARGUMENT` whose message names the
 * option, says what was expected and shows what came, e.g. `epochs must be a positive integer, got 0`.
 * Structure is checked again in the binding and numerics in the core; these are the friendly messages.
 */
import { IpclipError, type IpclipErrorCode } from './errors.js';

/** How a wrong value is shown in a message: strings quoted, arrays and objects abbreviated. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name && value.constructor !== Object ? `a ${value.constructor.name}` : 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}

/** Predicates. */
export const is = {
  defined: (v: unknown): boolean => v !== undefined && v !== null,
  finiteNumber: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v),
  positiveNumber: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0,
  integer: (v: unknown): v is number => Number.isInteger(v),
  positiveInteger: (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0,
  nonNegativeInteger: (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0,
  inRange: (v: unknown, lo: number, hi: number): v is number => typeof v === 'number' && v >= lo && v <= hi,
  nonEmptyString: (v: unknown): v is string => typeof v === 'string' && v.length > 0,
  oneOf: <T>(v: unknown, options: readonly T[]): v is T => options.includes(v as T),
  plainObject: (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null),
  stringList: (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string'),
  nonEmptyStringList: (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0),
} as const;

function fail(message: string, code: IpclipErrorCode = 'ERR_INVALID_ARGUMENT'): never {
  throw new IpclipError(code, message);
}

/** `name` must be an integer ≥ 1 (and ≤ `max` when given). */
export function assertPositiveInteger(value: unknown, name: string, max?: number): asserts value is number {
  if (!is.positiveInteger(value) || (max !== undefined && value > max)) {
    fail(`${name} must be ${max === undefined ? 'a positive integer' : `an integer between 1 and ${max}`}, got ${show(value)}`);
  }
}

/** `name` must be an integer ≥ 0. */
export function assertNonNegativeInteger(value: unknown, name: string): asserts value is number {
  if (!is.nonNegativeInteger(value)) fail(`${name} must be a non-negative integer, got ${show(value)}`);
}

/** `name` must be an integer in [lo, hi]. */
export function assertIntegerInRange(value: unknown, name: string, lo: number, hi: number): asserts value is number {
  if (!is.integer(value) || value < lo || value > hi) fail(`${name} must be an integer between ${lo} and ${hi}, got ${show(value)}`);
}

/** `name` must be a finite number (NaN and ±Infinity refused). */
export function assertFiniteNumber(value: unknown, name: string): asserts value is number {
  if (!is.finiteNumber(value)) fail(`${name} must be a finite number, got ${show(value)}`);
}

/** `name` must be a finite number > 0. */
export function assertPositiveNumber(value: unknown, name: string): asserts value is number {
  if (!is.positiveNumber(value)) fail(`${name} must be a positive number, got ${show(value)}`);
}

/** `name` must be a finite number in [lo, hi]. */
export function assertNumberInRange(value: unknown, name: string, lo: number, hi: number): asserts value is number {
  if (!is.finiteNumber(value) || value < lo || value > hi) fail(`${name} must be a number between ${lo} and ${hi}, got ${show(value)}`);
}

/** `name` must be one of `options` (compared with `===`). */
export function assertOneOf<T>(value: unknown, name: string, options: readonly T[]): asserts value is T {
  if (!is.oneOf(value, options)) fail(`${name} must be one of ${options.map((o) => show(o)).join(', ')}, got ${show(value)}`);
}

/** `name` must be a non-empty string. */
export function assertNonEmptyString(value: unknown, name: string): asserts value is string {
  if (!is.nonEmptyString(value)) fail(`${name} must be a non-empty string, got ${show(value)}`);
}

/** `name` must be a plain object (`{ ... }`, not an array, class instance or null). */
export function assertPlainObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (!is.plainObject(value)) fail(`${name} must be a plain object, got ${show(value)}`);
}

/** `name` must be a non-empty array of non-empty strings (`ERR_EMPTY_INPUT` for an empty array). */
export function assertNonEmptyStringList(value: unknown, name: string): asserts value is string[] {
  if (Array.isArray(value) && value.length === 0) fail(`${name} must not be empty`, 'ERR_EMPTY_INPUT');
  if (!is.nonEmptyStringList(value)) fail(`${name} must be an array of non-empty strings, got ${show(value)}`);
}

/** True when two class-name lists are the same names in the same order (the one equality the package uses). */
export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((c, i) => c === b[i]);
}
