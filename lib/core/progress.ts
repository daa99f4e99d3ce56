/**
 * The two options every long library call takes: `onProgress` (how far it is) and `signal` (stop it). A call
 * checks the signal between batches, never inside one, and when it fires rejects with `ERR_ABORTED` without
 * returning or writing anything half-done.
 */
import { IpclipError, check } from './errors.js';

/**
 * How far a long call is: `done` of `total` units (images for classification and evaluation).
 * @category Errors, tensors, runtime
 */
export interface ProgressEvent {
  done: number;
  total: number;
}

/**
 * Progress and cancellation of a long call.
 * @category Errors, tensors, runtime
 */
export interface LongCallOptions {
  /** Called after each batch with the units done so far (the last call has `done === total`). */
  onProgress?: (progress: ProgressEvent) => void;
  /** Stops the call between batches: it rejects with `ERR_ABORTED` and returns nothing partial. */
  signal?: AbortSignal;
}

/** Checks the two options' types (`ERR_INVALID_ARGUMENT`). */
export function checkLongCall(what: string, opts: LongCallOptions): void {
  check(opts.onProgress === undefined || typeof opts.onProgress === 'function', `${what}: onProgress must be a function`);
  check(opts.signal === undefined || (typeof opts.signal === 'object' && opts.signal !== null && typeof opts.signal.aborted === 'boolean'),
    `${what}: signal must be an AbortSignal`);
}

/** Rejects with `ERR_ABORTED` when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new IpclipError('ERR_ABORTED', `${what} stopped on request`);
}
