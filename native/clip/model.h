// OpenAI CLIP: a ViT image tower and a causal text transformer, with OpenAI's parameter names
// (`visual.conv1.weight`, `transformer.resblocks.0.attn.in_proj_weight`, `token_embedding.weight`, …).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>

#include "clip/config.h"
#include "clip/transformer.h"

namespace ipclip {

// What the vision tower returns. `layers` and `stats` are filled only when asked for.
struct VisionOutput {
  torch::Tensor embeds;  // [B,D] (not normalised, as OpenAI's encode_image)
  torch::Tensor layers;  // [L,B,T,W] residual stream after each block (compute dtype)
  torch::Tensor stats;   // [L,B,2,W] at least fp32: per-layer token mean (index 0) and std (index 1), method §1
};

struct VisionRequest {
  bool layers = false;  // materialise the full residual streams (costly: L·B·T·W)
  bool stats = false;   // per-layer mean/std only, computed as each block finishes
};

class VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit VisionTransformerImpl(const VisionConfig& c, int64_t embedDim);
  // images: [B,3,S,S] normalised, any float dtype (converted to the tower's)
  VisionOutput forward(const torch::Tensor& images, const VisionRequest& request = {});

  torch::nn::Conv2d conv1{nullptr};
  torch::Tensor class_embedding;       // [W]
  torch::Tensor positional_embedding;  // [T,W]
  torch::nn::LayerNorm ln_pre{nullptr};
  Transformer transformer{nullptr};
  torch::nn::LayerNorm ln_post{nullptr};
  torch::Tensor proj;                  // [W,D]
  LinearKernel kernel = LinearKernel::Blas;  // the engine of the patch embedding as a product (clip/linear.h)
  LinearPack patchPack;                      // conv1's weight as [W,3P²], packed on first use

 private:
  VisionConfig config_;
};
TORCH_MODULE(VisionTransformer);

// The dtype statistics and everything downstream of the towers (prompt, losses, optimiser) run in: at least
// fp32 — float64 towers keep float64, half-precision towers get fp32.
inline torch::Dtype atLeastFloat32(torch::Dtype d) { return d == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32; }

// Per-layer statistics of method §1 from one residual stream h: [B,T,W] → [B,2,W] in at least fp32.
torch::Tensor tokenStatistics(const torch::Tensor& h);

class ClipImpl : public torch::nn::Module {
 public:
  explicit ClipImpl(const ClipConfig& config);

  VisionOutput encodeImage(const torch::Tensor& images, const VisionRequest& request = {}) {
    return visual->forward(images, request);
  }
  // ids: [N,ctx] int64 → [N,D]; the EOT row is found as argmax(ids) (EOT has the largest id).
  torch::Tensor encodeText(const torch::Tensor& ids);
  // prompts: [N,ctx',W] token embeddings without positions (ctx' ≤ context length), eot: [N] int64 → [N,D].
  // Gradients flow into `prompts`.
  torch::Tensor encodePrompts(const torch::Tensor& prompts, const torch::Tensor& eot);
  // From the final hidden states at the EOT rows, [N,W] → ln_final → projection → [N,D].
  torch::Tensor projectText(const torch::Tensor& eotHidden);

  const ClipConfig& config() const { return config_; }
  // The compute dtype (that of the matrices; see castClip for what stays fp32).
  torch::Dtype dtype() const { return text_projection.scalar_type(); }
  torch::Device device() const { return text_projection.device(); }

  // The engine of both towers' linear layers (clip/linear.h): set on every residual block. Blas unless set.
  void setLinearKernel(LinearKernel kernel);
  LinearKernel linearKernel() const { return linearKernel_; }

  VisionTransformer visual{nullptr};
  Transformer transformer{nullptr};
  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor positional_embedding;  // [ctx,Wt]
  torch::nn::LayerNorm ln_final{nullptr};
  torch::Tensor text_projection;       // [Wt,D]
  torch::Tensor logit_scale;           // [] (log of the scale)

 private:
  ClipConfig config_;
  LinearKernel linearKernel_ = LinearKernel::Blas;
};
TORCH_MODULE(Clip);

// Moves a CLIP to `device` and its compute dtype. For half precision (bfloat16, float16) the parameters whose
// rounding would shift every result — logit_scale (ln 100 is 4.59375 in bf16: a 1 % scale error), the LayerNorm
// gains and biases, the class and positional embeddings — stay fp32 and are cast at use, as open_clip does.
// float32 and float64 cast everything.
void castClip(ClipImpl& model, torch::Device device, torch::Dtype dtype);

}  // namespace ipclip
