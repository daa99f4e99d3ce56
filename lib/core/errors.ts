/**
 * Every error ipclip throws or rejects with is an {@link IpclipError}: a plain JS `Error` with a stable,
 * machine-readable `code`. Native errors arrive with the same shape (the addon sets `code`).
 */

/**
 * Stable error codes. Callers may switch on them; messages are for people and may change.
 * @category Errors, tensors, runtime
 */
export type IpclipErrorCode =
  | 'ERR_INVALID_ARGUMENT'   // a wrong type, shape, value or option
  | 'ERR_EMPTY_INPUT'        // an empty batch, list or dataset
  | 'ERR_FILE_NOT_FOUND'     // a path that does not exist
  | 'ERR_NOT_FOUND'          // a name (model, registry entry) that is not known
  | 'ERR_BAD_FILE'           // a file that exists but cannot be parsed (corrupt, truncated, hostile)
  | 'ERR_BAD_IMAGE'          // an image that cannot be decoded or is too large
  | 'ERR_BAD_WEIGHTS'        // a checkpoint whose tensors do not form a CLIP / prompt
  | 'ERR_MISMATCH'           // a checkpoint used with another CLIP or other class names
  | 'ERR_TEXT_TOO_LONG'      // a text over the context length without `truncate`
  | 'ERR_NON_FINITE'         // NaN or Inf where numbers must be finite
  | 'ERR_DISPOSED'           // a call on a disposed object
  | 'ERR_DEVICE'             // a device or dtype that this build or machine cannot use
  | 'ERR_ADDON_MISSING'      // the compiled addon is not built
  | 'ERR_IO'                 // a failed write (disk full, permissions)
  | 'ERR_ABORTED'            // work stopped on request
  | 'ERR_DISTRIBUTED'        // a data-parallel peer exited, timed out or could not be reached
  | 'ERR_NATIVE';            // any other native failure

/** @category Errors, tensors, runtime */
export class IpclipError extends Error {
  readonly code: IpclipErrorCode;
  constructor(code: IpclipErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IpclipError';
    this.code = code;
  }
}

/** Throws `ERR_INVALID_ARGUMENT` with `message` unless `condition` holds. */
export function check(condition: unknown, message: string, code: IpclipErrorCode = 'ERR_INVALID_ARGUMENT'): asserts condition {
  if (!condition) throw new IpclipError(code, message);
}
