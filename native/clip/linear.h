// The matrix products of the frozen towers' linear layers, through one of two CPU engines:
//   Blas:   at::linear → addmm → the BLAS libtorch was built with (OpenBLAS in Debian's libtorch; for bf16,
//           libtorch's own oneDNN matmul);
//   OneDnn: oneDNN, which picks its kernel from the CPU's ISA at run time (AVX2, AVX-512, AMX) whatever the BLAS's
//           own core detection says: the layer's weight packed once (clip/onednn_kernels.h) with the bias and
//           QuickGELU fused, where the addon was built with oneDNN's C++ API; else libtorch's at::mkldnn_linear.
// Only float32 and bfloat16 CPU tensors take the oneDNN path; float64 (exactness checks), float16 and CUDA always
// take the Blas (at::linear) path, so their results are today's, bit for bit.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>

#include "clip/onednn_kernels.h"

namespace ipclip {

enum class LinearKernel { Blas, OneDnn };

const char* linearKernelName(LinearKernel k);  // "blas" / "onednn"

// "blas", "onednn" or "auto" (oneDNN on CPUs with AVX-512, where it measured faster than OpenBLAS; OpenBLAS on
// AVX2-only CPUs, where the two measured alike). Anything else is ERR_INVALID_ARGUMENT.
LinearKernel parseLinearKernel(const std::string& s);

// A layer's oneDNN-packed weight, made on its first oneDNN call and remade when the weight tensor changes (a cast,
// a load): each linear layer of the towers owns one.
struct LinearPack {
  std::shared_ptr<PackedLinear> packed;
};

// y = epilogue(x·wᵀ + b) for x [..., K], w [N, K], b [N] or undefined → [..., N]; the epilogue is QuickGELU,
// x·σ(1.702·x), or none. Gradients flow to x (and to w and b when they require them) on every path. With a pack and
// the packed kernel built in, frozen layers (w and b not requiring a gradient) run on the packed weight, whose
// backward gives x's gradient; layers being trained (pretraining) take at::mkldnn_linear and its backward.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, LinearKernel kernel,
                     LinearPack* pack = nullptr, Epilogue epilogue = Epilogue::None);

// QuickGELU, x·σ(1.702·x), as OpenAI's CLIP was trained with: differentiable when x needs a gradient, else in one
// buffer instead of three.
torch::Tensor quickGelu(const torch::Tensor& x);

// Whether `kernel` would run `x`·`w` through oneDNN (float32 or bfloat16, CPU, libtorch built with oneDNN).
bool usesOneDnn(const torch::Tensor& x, const torch::Tensor& w, LinearKernel kernel);

// CPU features from the kernel's report (/proc/cpuinfo flags; false where it cannot be read).
struct CpuFeatures {
  bool avx2 = false, avx512f = false, avx512bf16 = false, amxBf16 = false;
  std::string model;   // "model name"
  double mhz = 0;      // "cpu MHz" of the first CPU as the kernel reports it (a VM reports its nominal clock)
  // Physical cores this process may run on: distinct ("physical id", "core id") pairs of the CPUs in its affinity
  // mask (SMT siblings count once); 0 when /proc/cpuinfo does not say.
  int physicalCores = 0;
};
const CpuFeatures& cpuFeatures();

}  // namespace ipclip
