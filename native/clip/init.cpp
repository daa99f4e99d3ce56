#include "clip/init.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace ipclip {

namespace {

struct Init {
  at::Generator gen;
  void normal(torch::Tensor& t, double std) { t.normal_(0.0, std, gen); }
  void uniform(torch::Tensor& t, double bound) { t.uniform_(-bound, bound, gen); }
};

void initLayerNorm(torch::nn::LayerNormImpl& ln) {
  ln.weight.fill_(1.0);
  ln.bias.zero_();
}

// OpenAI's stds for one transformer of width W and depth L.
void initTransformer(TransformerImpl& t, int64_t width, Init& init) {
  const double W = static_cast<double>(width), L = static_cast<double>(t.size());
  const double attnStd = std::pow(W, -0.5);
  const double projStd = attnStd * std::pow(2.0 * L, -0.5);
  const double fcStd = std::pow(2.0 * W, -0.5);
  for (size_t i = 0; i < t.size(); ++i) {
    auto& b = t.block(i);
    initLayerNorm(*b.ln_1);
    initLayerNorm(*b.ln_2);
    init.normal(b.attn->in_proj_weight, attnStd);
    b.attn->in_proj_bias.zero_();
    init.normal(b.attn->out_proj->weight, projStd);
    b.attn->out_proj->bias.zero_();
    init.normal(b.mlp->c_fc->weight, fcStd);
    b.mlp->c_fc->bias.zero_();
    init.normal(b.mlp->c_proj->weight, projStd);
    b.mlp->c_proj->bias.zero_();
  }
}

}  // namespace

void initializeClip(ClipImpl& m, uint64_t seed) {
  torch::NoGradGuard noGrad;
  Init init{at::detail::createCPUGenerator(seed)};
  // Draw on CPU in fp32 and copy, so the result is the same whatever the model's device and dtype.
  auto draw = [&](torch::Tensor& p, auto&& fill) {
    auto t = torch::empty(p.sizes(), torch::kFloat32);
    fill(t);
    p.copy_(t);
  };
  const auto& c = m.config();

  auto& v = *m.visual;
  const double vScale = std::pow(static_cast<double>(c.vision.width), -0.5);
  const double fanIn = 3.0 * c.vision.patchSize * c.vision.patchSize;
  draw(v.conv1->weight, [&](torch::Tensor& t) { init.uniform(t, 1.0 / std::sqrt(fanIn)); });
  draw(v.class_embedding, [&](torch::Tensor& t) { init.normal(t, vScale); });
  draw(v.positional_embedding, [&](torch::Tensor& t) { init.normal(t, vScale); });
  initLayerNorm(*v.ln_pre);
  initLayerNorm(*v.ln_post);
  draw(v.proj, [&](torch::Tensor& t) { init.normal(t, vScale); });
  // The blocks are drawn in CPU fp32 too, one tensor at a time.
  {
    auto cpu = VisionTransformer(c.vision, c.embedDim);
    initTransformer(*cpu->transformer, c.vision.width, init);
    auto src = cpu->transformer->named_parameters(true);
    auto dst = v.transformer->named_parameters(true);
    for (auto& p : dst) p.value().copy_(src[p.key()]);
  }

  draw(m.token_embedding->weight, [&](torch::Tensor& t) { init.normal(t, 0.02); });
  draw(m.positional_embedding, [&](torch::Tensor& t) { init.normal(t, 0.01); });
  {
    auto cpu = Transformer(c.text.width, c.text.layers, c.text.heads);
    initTransformer(*cpu, c.text.width, init);
    auto src = cpu->named_parameters(true);
    auto dst = m.transformer->named_parameters(true);
    for (auto& p : dst) p.value().copy_(src[p.key()]);
  }
  initLayerNorm(*m.ln_final);
  draw(m.text_projection, [&](torch::Tensor& t) { init.normal(t, std::pow(static_cast<double>(c.text.width), -0.5)); });
  m.logit_scale.fill_(std::log(1.0 / 0.07));
}

}  // namespace ipclip
