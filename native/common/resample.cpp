// PIL-exact antialiased bicubic resampling (see resample.h for the method).
#include "common/resample.h"

#include <algorithm>
#include <cmath>
#include <thread>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/errors.h"

namespace ipclip::image {

namespace {

// Fixed point as PIL's 8-bit resampler: 8 bits of pixel, 2 bits of headroom for the kernel's negative lobes
// (partial sums may exceed 255 before clipping), 22 fractional bits of weight.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

// The Catmull-Rom cubic (Keys' kernel with a = -0.5), zero beyond |x| >= 2.
double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// The taps of one axis: output i reads `count[i]` inputs from `first[i]` with weights weights[i·ksize + j].
struct Taps {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;
};

Taps computeTaps(int64_t inSize, int64_t outSize) {
  const double scale = static_cast<double>(inSize) / static_cast<double>(outSize);
  const double stretch = std::max(scale, 1.0);  // widen the kernel only when reducing (antialiasing)
  const double support = 2.0 * stretch;
  Taps t;
  t.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(outSize);
  t.count.resize(outSize);
  t.weights.assign(static_cast<size_t>(outSize * t.ksize), 0);
  std::vector<double> w(static_cast<size_t>(t.ksize));
  const double inverse = 1.0 / stretch;  // PIL multiplies by the reciprocal (dividing can differ in the last bit)
  for (int64_t i = 0; i < outSize; ++i) {
    const double centre = (static_cast<double>(i) + 0.5) * scale;
    // Truncation toward zero, as C's (int) cast: for the lower end a negative value clamps to 0 either way.
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(centre - support + 0.5));
    const int64_t hi = std::min<int64_t>(inSize, static_cast<int64_t>(centre + support + 0.5));
    const int64_t n = hi - lo;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      w[j] = cubic((static_cast<double>(j + lo) - centre + 0.5) * inverse);
      sum += w[j];
    }
    int32_t* k = &t.weights[static_cast<size_t>(i * t.ksize)];
    for (int64_t j = 0; j < n; ++j) {
      const double v = (sum != 0.0 ? w[j] / sum : w[j]) * static_cast<double>(int32_t{1} << kPrecisionBits);
      k[j] = static_cast<int32_t>(v < 0.0 ? v - 0.5 : v + 0.5);  // half away from zero, then truncate
    }
    t.first[i] = lo;
    t.count[i] = n;
  }
  return t;
}

inline uint8_t clip8(int32_t s) {
  if (s <= 0) return 0;
  if (s >= (int32_t{256} << kPrecisionBits)) return 255;
  return static_cast<uint8_t>(s >> kPrecisionBits);
}

// The horizontal pass works on blocks of kLanes rows, transposed so that each byte column of the block (one
// channel of one pixel in every row) lies contiguous: a weight then multiplies kLanes·C adjacent samples, a
// loop compilers vectorise.
constexpr int64_t kLanes = 16;

// Where the compiler can, the kernels are also built for AVX2 and picked at load time (same integer results).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__APPLE__) && !defined(__clang__)
#define IPCLIP_RESAMPLE_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define IPCLIP_RESAMPLE_KERNEL
#endif

// block[j·kLanes + r] = rows[r][j] for j < n: the transpose of a kLanes × n byte matrix.
void transposeBlock(const uint8_t* const* rows, int64_t n, uint8_t* block) {
  int64_t j = 0;
#if defined(__SSE2__)
  // 16×16 tiles in four rounds of interleaving (8-, 16-, 32- then 64-bit units).
  static_assert(kLanes == 16, "the SSE2 transpose is written for 16 rows");
  for (; j + 16 <= n; j += 16) {
    __m128i a[16], t[16];
    for (int r = 0; r < 16; ++r) a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + j));
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
      t[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    for (int g = 0; g < 4; ++g) {  // rows 4g..4g+3; t[4g..4g+3] hold pairs (4g,4g+1) and (4g+2,4g+3)
      a[4 * g + 0] = _mm_unpacklo_epi16(t[4 * g + 0], t[4 * g + 2]);  // columns 0–3
      a[4 * g + 1] = _mm_unpackhi_epi16(t[4 * g + 0], t[4 * g + 2]);  // 4–7
      a[4 * g + 2] = _mm_unpacklo_epi16(t[4 * g + 1], t[4 * g + 3]);  // 8–11
      a[4 * g + 3] = _mm_unpackhi_epi16(t[4 * g + 1], t[4 * g + 3]);  // 12–15
    }
    for (int h = 0; h < 2; ++h) {  // rows 8h..8h+7 from groups 2h and 2h+1
      for (int q = 0; q < 4; ++q) {
        t[8 * h + 2 * q] = _mm_unpacklo_epi32(a[8 * h + q], a[8 * h + 4 + q]);      // columns 4q, 4q+1
        t[8 * h + 2 * q + 1] = _mm_unpackhi_epi32(a[8 * h + q], a[8 * h + 4 + q]);  // 4q+2, 4q+3
      }
    }
    for (int k = 0; k < 8; ++k) {  // column 2k and 2k+1: rows 0–7 from t[k], rows 8–15 from t[8+k]
      _mm_storeu_si128(reinterpret_cast<__m128i*>(block + (j + 2 * k) * 16), _mm_unpacklo_epi64(t[k], t[8 + k]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(block + (j + 2 * k + 1) * 16), _mm_unpackhi_epi64(t[k], t[8 + k]));
    }
  }
#endif
  for (; j < n; ++j)
    for (int64_t r = 0; r < kLanes; ++r) block[j * kLanes + r] = rows[r][j];
}

// Output rows [y0, y1) of the horizontal pass (outW × C bytes each) from input rows rowOffset + y.
template <int C>
IPCLIP_RESAMPLE_KERNEL void horizontalRows(const uint8_t* src, int64_t inW, int64_t rowOffset, uint8_t* out,
                                           int64_t outW, const Taps& t, int64_t y0, int64_t y1) {
  constexpr int64_t L = kLanes * C;
  const int64_t rowBytes = inW * C;
  std::vector<uint8_t> block(static_cast<size_t>(rowBytes * kLanes));  // block[(x·C + c)·kLanes + r]
  const std::vector<uint8_t> zeros(static_cast<size_t>(rowBytes), 0);  // stands in for rows past the end
  for (int64_t b = y0; b < y1; b += kLanes) {
    const int64_t rows = std::min(kLanes, y1 - b);
    const uint8_t* rowPtr[kLanes];
    for (int64_t r = 0; r < kLanes; ++r) rowPtr[r] = r < rows ? src + (rowOffset + b + r) * rowBytes : zeros.data();
    transposeBlock(rowPtr, rowBytes, block.data());
    for (int64_t x = 0; x < outW; ++x) {
      const uint8_t* q = block.data() + t.first[x] * L;
      const int32_t* k = &t.weights[static_cast<size_t>(x * t.ksize)];
      const int64_t n = t.count[x];
      int32_t acc[L];
      for (int64_t e = 0; e < L; ++e) acc[e] = kHalf;
      for (int64_t j = 0; j < n; ++j, q += L) {
        const int32_t w = k[j];
        for (int64_t e = 0; e < L; ++e) acc[e] += static_cast<int32_t>(q[e]) * w;
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int c = 0; c < C; ++c) out[((b + r) * outW + x) * C + c] = clip8(acc[c * kLanes + r]);
    }
  }
}

// Output rows [y0, y1) of the vertical pass; `src` holds the rows the taps index (width × C bytes each).
IPCLIP_RESAMPLE_KERNEL void verticalRows(const uint8_t* src, int64_t rowBytes, uint8_t* out, const Taps& t, int64_t rowShift,
                  int64_t y0, int64_t y1) {
  std::vector<int32_t> acc(static_cast<size_t>(rowBytes));
  for (int64_t y = y0; y < y1; ++y) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &t.weights[static_cast<size_t>(y * t.ksize)];
    const uint8_t* base = src + (t.first[y] - rowShift) * rowBytes;
    // Row by row over the taps: contiguous reads, one accumulator per byte of the output row.
    for (int64_t j = 0; j < t.count[y]; ++j) {
      const uint8_t* r = base + j * rowBytes;
      const int32_t w = k[j];
      int32_t* a = acc.data();
      for (int64_t x = 0; x < rowBytes; ++x) a[x] += static_cast<int32_t>(r[x]) * w;
    }
    uint8_t* o = out + y * rowBytes;
    for (int64_t x = 0; x < rowBytes; ++x) o[x] = clip8(acc[x]);
  }
}

// Runs fn(begin, end) over [0, n) split into `threads` contiguous parts (on this thread when threads <= 1).
template <typename Fn>
void parallelRows(int64_t n, int threads, Fn fn) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (parts == 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(parts - 1));
  for (int64_t p = 1; p < parts; ++p) pool.emplace_back(fn, n * p / parts, n * (p + 1) / parts);
  fn(int64_t{0}, n / parts);
  for (auto& th : pool) th.join();
}

template <int C>
void horizontal(const uint8_t* src, int64_t inW, int64_t rowOffset, uint8_t* out, int64_t outW, int64_t rows,
                const Taps& t, int threads) {
  parallelRows(rows, threads, [&](int64_t a, int64_t b) { horizontalRows<C>(src, inW, rowOffset, out, outW, t, a, b); });
}

}  // namespace

std::string checkResizeArgs(int64_t inW, int64_t inH, int channels, size_t bytes, int64_t outW, int64_t outH) {
  auto dims = [](int64_t w, int64_t h) { return std::to_string(w) + "×" + std::to_string(h); };
  if (channels < 1 || channels > 4) return "channels must be 1 to 4 (got " + std::to_string(channels) + ")";
  if (inW < 1 || inH < 1 || inW > kMaxResizeSide || inH > kMaxResizeSide) {
    return "image size must be 1 to " + std::to_string(kMaxResizeSide) + " per side (got " + dims(inW, inH) + ")";
  }
  if (outW < 1 || outH < 1 || outW > kMaxResizeSide || outH > kMaxResizeSide || outW * outH > kMaxResizePixels) {
    return "resize target must be 1 to " + std::to_string(kMaxResizeSide) + " per side and at most " +
           std::to_string(kMaxResizePixels) + " pixels (got " + dims(outW, outH) + ")";
  }
  if (static_cast<uint64_t>(bytes) != static_cast<uint64_t>(inW * inH * channels)) {
    return "image data has " + std::to_string(bytes) + " bytes, expected " + dims(inW, inH) + "×" +
           std::to_string(channels) + " = " + std::to_string(inW * inH * channels);
  }
  return {};
}

std::vector<uint8_t> resizeBicubic(const uint8_t* src, int64_t inW, int64_t inH, int channels, int64_t outW,
                                   int64_t outH, int threads) {
  const std::string why = checkResizeArgs(inW, inH, channels, static_cast<size_t>(inW * inH * channels), outW, outH);
  if (!why.empty()) fail("ERR_INVALID_ARGUMENT", why);
  const bool needH = outW != inW, needV = outH != inH;
  if (!needH && !needV) return std::vector<uint8_t>(src, src + inW * inH * channels);

  const Taps vert = needV ? computeTaps(inH, outH) : Taps{};
  // The horizontal pass covers only the rows the vertical pass reads (all of them when it does not run).
  const int64_t firstRow = needV ? vert.first[0] : 0;
  const int64_t endRow = needV ? vert.first[outH - 1] + vert.count[outH - 1] : inH;
  const uint8_t* rows = src;  // the vertical pass's input, its row 0 being input row `shift`
  int64_t rowsWidth = inW, shift = 0;
  std::vector<uint8_t> tmp;
  if (needH) {
    const Taps hor = computeTaps(inW, outW);
    const int64_t n = endRow - firstRow;
    tmp.resize(static_cast<size_t>(outW * n * channels));
    switch (channels) {
      case 1: horizontal<1>(src, inW, firstRow, tmp.data(), outW, n, hor, threads); break;
      case 2: horizontal<2>(src, inW, firstRow, tmp.data(), outW, n, hor, threads); break;
      case 3: horizontal<3>(src, inW, firstRow, tmp.data(), outW, n, hor, threads); break;
      default: horizontal<4>(src, inW, firstRow, tmp.data(), outW, n, hor, threads); break;
    }
    if (!needV) return tmp;
    rows = tmp.data();
    rowsWidth = outW;
    shift = firstRow;
  }
  std::vector<uint8_t> out(static_cast<size_t>(outW * outH * channels));
  const int64_t rowBytes = rowsWidth * channels;
  parallelRows(outH, threads, [&](int64_t a, int64_t b) { verticalRows(rows, rowBytes, out.data(), vert, shift, a, b); });
  return out;
}

}  // namespace ipclip::image
