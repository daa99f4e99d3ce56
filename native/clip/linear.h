// The matrix products of the frozen towers' linear layers, through one of libtorch's two CPU engines:
//   Blas:   at::linear → addmm → the BLAS libtorch was built with (OpenBLAS in Debian's libtorch);
//   OneDnn: at::mkldnn_linear, oneDNN's inner product, which picks its kernel from the CPU's ISA at run time
//           (AVX2, AVX-512, AMX) whatever the BLAS's own core detection says.
// Only float32 CPU tensors take the oneDNN path; float64 (exactness checks), half precision and CUDA always take
// the Blas (at::linear) path, so their results are today's, bit for bit.
#pragma once
#include <torch/types.h>

#include <string>

namespace ipclip {

enum class LinearKernel { Blas, OneDnn };

const char* linearKernelName(LinearKernel k);  // "blas" / "onednn"

// "blas", "onednn" or "auto" (oneDNN on CPUs with AVX-512, where it measured faster than OpenBLAS; OpenBLAS on
// AVX2-only CPUs, where the two measured alike). Anything else is ERR_INVALID_ARGUMENT.
LinearKernel parseLinearKernel(const std::string& s);

// y = x·wᵀ + b for x [..., K], w [N, K], b [N] or undefined → [..., N]. Gradients flow to x (and to w and b when
// they require them) on both paths: oneDNN's backward is libtorch's mkldnn_linear_backward.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, LinearKernel kernel);

// Whether `kernel` would run `x`·`w` through oneDNN (float32, CPU, libtorch built with oneDNN).
bool usesOneDnn(const torch::Tensor& x, const torch::Tensor& w, LinearKernel kernel);

// CPU features from the kernel's report (/proc/cpuinfo flags; false where it cannot be read).
struct CpuFeatures {
  bool avx2 = false, avx512f = false, avx512bf16 = false, amxBf16 = false;
  std::string model;   // "model name"
  double mhz = 0;      // "cpu MHz" of the first CPU as the kernel reports it (a VM reports its nominal clock)
};
const CpuFeatures& cpuFeatures();

}  // namespace ipclip
