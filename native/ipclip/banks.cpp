#include "ipclip/banks.h"

#include <ATen/Dispatch.h>

namespace ipclip {

FeatureBank::FeatureBank(int64_t c, int64_t k, int64_t d, torch::Dtype dtype)
    : feats(torch::zeros({c * k, d}, dtype)), conf(torch::zeros({c * k}, dtype)), classes(c), slots(k) {}

void FeatureBank::reset() {
  feats.zero_();
  conf.zero_();
  invalidate();
}

void FeatureBank::update(const torch::Tensor& featsIn, const torch::Tensor& logits, const torch::Tensor& labels,
                         BankRule rule) {
  torch::NoGradGuard noGrad;
  const auto dtype = feats.scalar_type();
  auto f = featsIn.detach().to(torch::kCPU, dtype).contiguous();
  auto probs = torch::softmax(logits.detach().to(torch::kCPU, dtype), -1);
  auto [confidence, predicted] = probs.max(-1);
  auto lab = labels.to(torch::kCPU, torch::kInt64);
  invalidate();
  AT_DISPATCH_FLOATING_TYPES(dtype, "FeatureBank::update", [&] {
    auto confA = confidence.accessor<scalar_t, 1>();
    auto predA = predicted.accessor<int64_t, 1>();
    auto labA = lab.accessor<int64_t, 1>();
    auto slotConf = conf.accessor<scalar_t, 1>();
    for (int64_t b = 0; b < f.size(0); ++b) {
      int64_t cls;
      if (rule == BankRule::Authorized) {
        if (predA[b] != labA[b]) continue;
        cls = labA[b];
      } else {
        cls = predA[b];
      }
      // The least confident slot of the class (the first one on ties).
      int64_t worst = cls * slots;
      for (int64_t s = cls * slots + 1; s < (cls + 1) * slots; ++s)
        if (slotConf[s] < slotConf[worst]) worst = s;
      if (confA[b] > slotConf[worst]) {
        feats[worst].copy_(f[b]);
        slotConf[worst] = confA[b];
      }
    }
  });
}

torch::Tensor FeatureBank::prototypes() const {
  return feats.view({classes, slots, -1}).mean(1);
}

const torch::Tensor& FeatureBank::prototypesOn(const torch::Device& device) {
  if (!cached_.defined() || cached_.device() != device) {
    torch::NoGradGuard noGrad;
    cached_ = prototypes().to(device);
  }
  return cached_;
}

}  // namespace ipclip
