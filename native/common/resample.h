// Antialiased bicubic resampling of 8-bit images that reproduces PIL's Image.resize(size, BICUBIC) byte for
// byte (the resize of CLIP's reference preprocessing, enlargements and reductions alike). Torch-free.
//
// The method, as PIL defines it for 8-bit images:
// - Separable: a horizontal pass over the rows the vertical pass will read, its result rounded and clipped to
//   8 bits, then a vertical pass. An axis whose size does not change is not resampled.
// - Output pixel i of an axis scaled by s = in/out is centred on input coordinate c = (i + 0.5)·s. The
//   Catmull-Rom kernel (bicubic, a = -0.5, support 2) is stretched by f = max(s, 1) when reducing (so it
//   low-pass filters), giving a support of 2f: taps j in [trunc(c - 2f + 0.5), trunc(c + 2f + 0.5)) clamped
//   to the image, weighted by k((j + 0.5 - c) / f) and normalised to sum 1.
// - Weights become integers with 22 fractional bits (rounded half away from zero), sums start at one half
//   and are shifted back and clipped to [0, 255]: integer arithmetic only, so the result is exact on every CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ipclip::image {

// Largest side and output pixel count accepted (the checks are the caller's, see checkResizeArgs).
constexpr int64_t kMaxResizeSide = int64_t{1} << 20;
constexpr int64_t kMaxResizePixels = int64_t{1} << 28;

// An empty string when (inW, inH, channels, bytes) → (outW, outH) can be resampled, else why not.
std::string checkResizeArgs(int64_t inW, int64_t inH, int channels, size_t bytes, int64_t outW, int64_t outH);

// Resamples an interleaved 8-bit image (`channels` in 1..4, rows top to bottom, no padding) to outW × outH.
// `threads` > 1 splits the rows of each pass over that many threads (the result does not depend on it).
// Throws IpclipError(ERR_INVALID_ARGUMENT) when checkResizeArgs refuses the arguments.
std::vector<uint8_t> resizeBicubic(const uint8_t* src, int64_t inW, int64_t inH, int channels, int64_t outW,
                                   int64_t outH, int threads = 1);

}  // namespace ipclip::image
