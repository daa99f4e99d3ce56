#include "clip/model.h"

#include "common/errors.h"

#include <set>

namespace ipclip {

namespace {
torch::nn::LayerNorm layerNorm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5));
}
}  // namespace

VisionTransformerImpl::VisionTransformerImpl(const VisionConfig& c, int64_t embedDim) : config_(c) {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, c.width, c.patchSize)
                                                         .stride(c.patchSize).bias(false)));
  class_embedding = register_parameter("class_embedding", torch::zeros({c.width}));
  positional_embedding = register_parameter("positional_embedding", torch::zeros({c.tokens(), c.width}));
  ln_pre = register_module("ln_pre", layerNorm(c.width));
  transformer = register_module("transformer", Transformer(c.width, c.layers, c.heads, c.activation));
  ln_post = register_module("ln_post", layerNorm(c.width));
  proj = register_parameter("proj", torch::zeros({c.width, embedDim}));
}

torch::Tensor tokenStatistics(const torch::Tensor& h) {
  auto x = h.to(atLeastFloat32(h.scalar_type()));  // statistics in at least fp32 whatever the tower's dtype
  auto mean = x.mean(1);                           // [B,W]
  auto ss = (x - mean.unsqueeze(1)).pow(2).sum(1); // [B,W]
  // The epsilon is added to the sum of squares, not to the variance (method §1).
  auto std = ((ss + 2.3e-8) / static_cast<double>(h.size(1))).sqrt();
  return torch::stack({mean, std}, 1);             // [B,2,W]
}

// Every image path (CLIP's encodeImage, the prompt model's logits, bank construction, the feature cache) enters the
// vision tower here, so one check refuses NaN/Inf pixels for all of them: a non-finite pixel would otherwise turn
// into NaN embeddings, logits and bank entries without an error.
static void requireFiniteImages(const torch::Tensor& images) {
  const auto bad = torch::isfinite(images).logical_not().flatten(1).any(1);  // [B]
  if (!bad.any().item<bool>()) return;
  const auto first = bad.nonzero()[0][0].item<int64_t>();
  fail("ERR_NON_FINITE", "image " + std::to_string(first) + " of the batch contains NaN or Inf values");
}

VisionOutput VisionTransformerImpl::forward(const torch::Tensor& images, const VisionRequest& request) {
  requireFiniteImages(images);
  const auto pixels = images.to(proj.scalar_type());
  torch::Tensor x;
  const auto& w = conv1->weight;                          // [W,3,P,P]
  if (packedLinearAvailable() && usesOneDnn(pixels, w, kernel) && (!torch::GradMode::is_enabled() || !w.requires_grad())) {
    // The patch embedding is a product: each P×P patch's 3P² pixels times the [W,3P²] weight. As one packed oneDNN
    // product it ran 3–4× faster than libtorch's oneDNN convolution with a P×P kernel and stride P (ViT-B/32,
    // batch 16: 36 ms).
    const auto B = pixels.size(0), P = w.size(2), g = pixels.size(2) / P;
    auto patches = pixels.view({B, 3, g, P, g, P}).permute({0, 2, 4, 1, 3, 5}).reshape({B, g * g, 3 * P * P});
    x = linear(patches, w.view({w.size(0), -1}), {}, kernel, &patchPack);  // [B,g²,W]
  } else {
    x = conv1->forward(pixels).flatten(2).transpose(1, 2);  // [B,W,g,g] → [B,g²,W]
  }
  const auto B = x.size(0);
  auto cls = class_embedding.to(x.scalar_type()).view({1, 1, -1}).expand({B, 1, x.size(2)});
  x = torch::cat({cls, x}, 1) + positional_embedding.to(x.scalar_type());  // [B,T,W]
  x = layerNorm(*ln_pre, x);

  VisionOutput out;
  std::vector<torch::Tensor> layers, stats;
  for (size_t i = 0; i < transformer->size(); ++i) {
    x = transformer->block(i).forward(x);
    if (request.layers) layers.push_back(x);
    if (request.stats) stats.push_back(tokenStatistics(x));  // [B,2,W]; the stream itself is not kept
  }
  if (request.layers) out.layers = torch::stack(layers, 0);
  if (request.stats) out.stats = torch::stack(stats, 0);
  out.embeds = torch::matmul(layerNorm(*ln_post, x.select(1, 0)), proj);  // [B,D]
  return out;
}

ClipImpl::ClipImpl(const ClipConfig& c) : config_(c) {
  visual = register_module("visual", VisionTransformer(c.vision, c.embedDim));
  transformer = register_module("transformer", Transformer(c.text.width, c.text.layers, c.text.heads, c.text.activation));
  token_embedding = register_module("token_embedding", torch::nn::Embedding(c.text.vocabSize, c.text.width));
  positional_embedding = register_parameter("positional_embedding", torch::zeros({c.text.contextLength, c.text.width}));
  ln_final = register_module("ln_final", layerNorm(c.text.width));
  text_projection = register_parameter("text_projection", torch::zeros({c.text.width, c.embedDim}));
  logit_scale = register_parameter("logit_scale", torch::zeros({}));
}

void ClipImpl::setLinearKernel(LinearKernel kernel) {
  linearKernel_ = kernel;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* v = m->as<VisionTransformerImpl>()) v->kernel = kernel;
    if (auto* a = m->as<AttentionImpl>()) a->kernel = kernel;
    if (auto* mlp = m->as<MlpImpl>()) mlp->kernel = kernel;
  }
}

torch::Tensor ClipImpl::encodeText(const torch::Tensor& ids) {
  auto eot = ids.argmax(-1);
  return encodePrompts(token_embedding->forward(ids), eot);
}

torch::Tensor ClipImpl::encodePrompts(const torch::Tensor& prompts, const torch::Tensor& eot) {
  const auto T = prompts.size(1);
  auto x = prompts.to(dtype()) + positional_embedding.slice(0, 0, T).to(dtype());  // [N,T,W]
  auto mask = causalMask(T, x.options());
  for (size_t i = 0; i < transformer->size(); ++i) x = transformer->block(i).forward(x, mask);
  auto rows = torch::arange(x.size(0), eot.options());
  return projectText(x.index({rows, eot}));
}

torch::Tensor ClipImpl::projectText(const torch::Tensor& eotHidden) {
  return torch::matmul(layerNorm(*ln_final, eotHidden), text_projection);
}

void castClip(ClipImpl& model, torch::Device device, torch::Dtype dtype) {
  torch::NoGradGuard noGrad;
  const bool half = dtype == torch::kBFloat16 || dtype == torch::kFloat16;
  if (!half) {
    model.to(device, dtype);
    return;
  }
  // The parameters kept in fp32, found by module (every LayerNorm) and by name (the embedding tables).
  std::set<c10::TensorImpl*> keep;
  for (auto& m : model.modules(/*include_self=*/true))
    if (auto* ln = m->as<torch::nn::LayerNormImpl>())
      for (auto& p : ln->parameters()) keep.insert(p.unsafeGetTensorImpl());
  for (auto* t : {&model.logit_scale, &model.positional_embedding, &model.visual->class_embedding,
                  &model.visual->positional_embedding})
    keep.insert(t->unsafeGetTensorImpl());
  model.to(device, torch::kFloat32);  // from the loaded values, not from a half-precision round trip
  for (auto& p : model.parameters())
    if (!keep.count(p.unsafeGetTensorImpl())) p.set_data(p.to(dtype));
}

}  // namespace ipclip
