/**
 * The plain tensor shape that crosses the JS/native boundary: a typed array and its dimensions.
 * @category Errors, tensors, runtime
 */
export interface Tensor<T extends Float32Array | Float64Array | Int32Array | BigInt64Array = Float32Array> {
  data: T;
  shape: number[];
}

/**
 * A float tensor as the addon returns it: `Float32Array` data, or `Float64Array` from a model loaded with
 * `dtype: 'float64'` (CPU only; used to prove computations exact).
 * @category Errors, tensors, runtime
 */
export type FloatTensor = Tensor<Float32Array | Float64Array>;

/**
 * A batch of images in CLIP's normalised layout, `[N, 3, S, S]`.
 * @category Errors, tensors, runtime
 */
export type ImageTensor = Tensor<Float32Array>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
