#include "ipclip/text_path.h"

#include "common/errors.h"

namespace ipclip {

ClassPrompts makeClassPrompts(ClipImpl& clip, const torch::Tensor& ids, int64_t nCtx) {
  torch::NoGradGuard noGrad;
  const int64_t ctx = ids.size(1);
  if (ctx != clip.config().text.contextLength)
    fail("ERR_INVALID_ARGUMENT", "class prompt tokens have length " + std::to_string(ctx) +
                                     ", the text tower's context length is " +
                                     std::to_string(clip.config().text.contextLength));
  auto dev = ids.to(clip.device());
  auto emb = clip.token_embedding->forward(dev);  // [C,ctx,Wt]
  ClassPrompts p;
  p.nCtx = nCtx;
  p.sot = emb[0].slice(0, 0, 1).clone();
  p.suffix = emb.slice(1, 1 + nCtx).clone();
  p.eot = dev.argmax(-1);
  const int64_t minEot = p.eot.min().item<int64_t>();
  p.maxEot = p.eot.max().item<int64_t>();
  if (minEot <= nCtx)
    fail("ERR_INVALID_ARGUMENT", "a class prompt's EOT lies inside the context slots: the prompt needs " +
                                     std::to_string(nCtx) + " context tokens before the class name");
  return p;
}

namespace {

torch::Tensor encodeNaive(ClipImpl& clip, const ClassPrompts& p, const torch::Tensor& context) {
  const int64_t B = context.size(0), C = p.suffix.size(0);
  std::vector<torch::Tensor> features;
  for (int64_t b = 0; b < B; ++b) {
    auto prompts = torch::cat({p.sot.unsqueeze(0).expand({C, 1, -1}),
                               context[b].unsqueeze(0).expand({C, -1, -1}).to(p.suffix.scalar_type()),
                               p.suffix}, 1);  // [C,ctx,Wt]
    features.push_back(clip.encodePrompts(prompts, p.eot).to(atLeastFloat32(clip.dtype())));  // [C,D]
  }
  return torch::stack(features, 0);  // [B,C,D]
}

// Attention of the class suffixes over [cached prefix ; causal suffix].
//   qs, ks, vs: [B·C,H,S,d] (suffix), kp, vp: [B,H,P,d] (prefix of each image)
torch::Tensor suffixAttention(const torch::Tensor& qs, const torch::Tensor& ks, const torch::Tensor& vs,
                              const torch::Tensor& kp, const torch::Tensor& vp, const torch::Tensor& mask,
                              int64_t B, int64_t C) {
  const int64_t H = qs.size(1), S = qs.size(2), d = qs.size(3), P = kp.size(2);
  // Scores against the prefix without materialising it C times: [B,H,C·S,d] @ [B,H,d,P].
  auto q = qs.reshape({B, C, H, S, d}).permute({0, 2, 1, 3, 4}).reshape({B, H, C * S, d});
  auto sp = torch::matmul(q, kp.transpose(-2, -1))                 // [B,H,C·S,P]
                .reshape({B, H, C, S, P}).permute({0, 2, 1, 3, 4})
                .reshape({B * C, H, S, P});
  auto ss = torch::matmul(qs, ks.transpose(-2, -1)) + mask;       // [B·C,H,S,S]
  auto attn = torch::softmax(torch::cat({sp, ss}, -1), -1);
  auto ap = attn.slice(-1, 0, P), as = attn.slice(-1, P);
  auto fromPrefix = torch::matmul(ap.reshape({B, C, H, S, P}).permute({0, 2, 1, 3, 4}).reshape({B, H, C * S, P}), vp)
                        .reshape({B, H, C, S, d}).permute({0, 2, 1, 3, 4}).reshape({B * C, H, S, d});
  return fromPrefix + torch::matmul(as, vs);                      // [B·C,H,S,d]
}

torch::Tensor encodeFast(ClipImpl& clip, const ClassPrompts& p, const torch::Tensor& context) {
  const int64_t B = context.size(0), C = p.suffix.size(0);
  const int64_t P = 1 + p.nCtx;                                      // SOT + context
  const int64_t S = p.maxEot - P + 1;                                // suffix up to the last EOT
  auto dtype = p.suffix.scalar_type();
  const auto pos = clip.positional_embedding.to(dtype);  // kept fp32 in half-precision towers: cast at use

  auto hp = torch::cat({p.sot.unsqueeze(0).expand({B, 1, -1}), context.to(dtype)}, 1) + pos.slice(0, 0, P);  // [B,P,W]
  auto hs = (p.suffix.slice(1, 0, S) + pos.slice(0, P, P + S))                                              // [C,S,W]
                .unsqueeze(0).expand({B, -1, -1, -1}).reshape({B * C, S, -1});                             // [B·C,S,W]
  auto maskP = causalMask(P, hp.options());
  auto maskS = causalMask(S, hp.options());

  const size_t layers = clip.transformer->size();
  for (size_t i = 0; i < layers; ++i) {
    auto& block = clip.transformer->block(i);
    auto& attn = *block.attn;
    auto [qp, kp, vp] = attn.project(layerNorm(*block.ln_1, hp));  // [B,H,P,d]
    auto [qs, ks, vs] = attn.project(layerNorm(*block.ln_1, hs));  // [B·C,H,S,d]
    hs = block.feedForward(hs + attn.merge(suffixAttention(qs, ks, vs, kp, vp, maskS, B, C)));
    // The prefix's own output is needed only as the next layer's input.
    if (i + 1 < layers) {
      auto scores = torch::matmul(qp, kp.transpose(-2, -1)) + maskP;
      hp = block.feedForward(hp + attn.merge(torch::matmul(torch::softmax(scores, -1), vp)));
    }
  }
  auto rows = torch::arange(B * C, p.eot.options());
  auto eotInSuffix = (p.eot - P).repeat({B});                        // [B·C]
  auto features = clip.projectText(hs.index({rows, eotInSuffix}));   // [B·C,D]
  return features.to(atLeastFloat32(clip.dtype())).view({B, C, -1});
}

}  // namespace

torch::Tensor encodeClassPrompts(ClipImpl& clip, const ClassPrompts& prompts, const torch::Tensor& context,
                                 TextPath path) {
  return path == TextPath::Fast ? encodeFast(clip, prompts, context) : encodeNaive(clip, prompts, context);
}

}  // namespace ipclip
