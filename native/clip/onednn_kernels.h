// The frozen towers' hot kernels through oneDNN's primitives: the linear layers on weights packed once, and the
// attention core's two batched products.
//
// Why not at::mkldnn_linear: libtorch 1.13 hands oneDNN a plain weight on every call, so oneDNN reorders it into
// its blocked layout each time and picks its inner-product kernel, which measured 180–215 GFLOP/s at the ViT MLP
// shape on an AVX-512 Xeon where OpenBLAS does 255–290. The matmul primitive on a weight packed once at the layout
// it asks for (format_tag::any) does 374 there in fp32 and 2170 in bf16 (AMX), and it can apply the bias and
// QuickGELU (oneDNN's swish with α = 1.702) in the same pass over the output. The library is the libdnnl that
// libtorch itself links (Debian libdnnl2); its C++ API comes from libdnnl-dev. Without those headers (PyTorch's
// own libtorch builds, which link oneDNN statically and hide it) the addon is built without this file's kernel,
// and `linear: 'onednn'` keeps libtorch's at::mkldnn_linear.
#pragma once
#include <torch/types.h>

#include <memory>

#if __has_include(<oneapi/dnnl/dnnl.hpp>) && !defined(IPCLIP_NO_DNNL)
#define IPCLIP_WITH_DNNL 1
#endif

namespace ipclip {

// What the kernel applies to x·wᵀ + b before writing it.
enum class Epilogue { None, QuickGelu };

// Whether this build carries the packed kernel (compiled against oneDNN's C++ API).
bool packedLinearAvailable();

// One layer's weight w [N,K] (fp32 or bf16, CPU, contiguous) and bias b [N] (or undefined), packed for y = x·wᵀ + b
// and, on first use, for the input gradient dx = dy·w. Holds the primitives per row count M (built once each).
// The layer must stay frozen: `matches` tells a caller when the weight it was built from has changed.
class PackedLinear {
 public:
  PackedLinear(const torch::Tensor& w, const torch::Tensor& b);
  ~PackedLinear();
  PackedLinear(const PackedLinear&) = delete;
  PackedLinear& operator=(const PackedLinear&) = delete;

  // The same tensors (storage, in-place version, dtype) as the ones it was packed from.
  bool matches(const torch::Tensor& w, const torch::Tensor& b) const;

  // x [M,K] contiguous, w's dtype → [M,N], the epilogue applied. No autograd.
  torch::Tensor forward(const torch::Tensor& x, Epilogue epilogue);
  // dy [M,N] contiguous → dx = dy·w [M,K]. No autograd.
  torch::Tensor backwardInput(const torch::Tensor& dy);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// y = x·wᵀ + b through `pack` for x [..., K]; when x needs a gradient (grad mode on), the result carries an autograd
// node whose backward is pack->backwardInput (the weight is frozen: no weight gradient). The epilogue must be None
// when x needs a gradient (QuickGELU's backward needs the pre-activation, which the fused kernel does not keep).
torch::Tensor packedLinear(const std::shared_ptr<PackedLinear>& pack, const torch::Tensor& x, Epilogue epilogue);

// The attention core without a gradient: softmax(scale · q·kᵀ)·v for q, k, v [B,H,T,d] (any strides with d
// contiguous: the views of the fused qkv projection) → [B,T,H·d], written straight in the layout out_proj reads.
// Both products are oneDNN batched matmuls reading the strided views in place (libtorch's matmul copies them to
// contiguous batches first), the scale applied to the product's output. Returns an undefined tensor where oneDNN
// offers only its reference kernel for the shapes (the caller then runs libtorch's path).
torch::Tensor attentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale);

}  // namespace ipclip
