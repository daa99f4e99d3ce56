/**
 * How the addon's errors become {@link IpclipError}s: the addon throws plain `Error`s carrying a `code` from the
 * shared contract (native/common/errors.h); these helpers rethrow them as `IpclipError` with the same code, so
 * callers can use `instanceof IpclipError`.
 */
import { IpclipError, type IpclipErrorCode } from '../core/errors.js';

const CODES: ReadonlySet<string> = new Set<IpclipErrorCode>([
  'ERR_INVALID_ARGUMENT', 'ERR_EMPTY_INPUT', 'ERR_FILE_NOT_FOUND', 'ERR_BAD_FILE', 'ERR_BAD_IMAGE', 'ERR_BAD_WEIGHTS',
  'ERR_MISMATCH', 'ERR_TEXT_TOO_LONG', 'ERR_NON_FINITE', 'ERR_DISPOSED', 'ERR_DEVICE', 'ERR_ADDON_MISSING', 'ERR_IO',
  'ERR_ABORTED', 'ERR_NATIVE', 'ERR_DISTRIBUTED',
]);

/**
 * Turns whatever the addon threw into an {@link IpclipError} with the same code and message. Errors without a
 * known code become `ERR_NATIVE`; IpclipErrors pass through.
 */
export function wrapNativeError(err: unknown): IpclipError {
  if (err instanceof IpclipError) return err;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return new IpclipError(typeof code === 'string' && CODES.has(code) ? (code as IpclipErrorCode) : 'ERR_NATIVE', err.message, { cause: err });
  }
  return new IpclipError('ERR_NATIVE', String(err));
}

/** Runs a native call (synchronous part and promise) and rethrows its failures through {@link wrapNativeError}. */
export async function callNative<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapNativeError(err);
  }
}

/** Synchronous variant of {@link callNative} for getters and setters. */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw wrapNativeError(err);
  }
}
