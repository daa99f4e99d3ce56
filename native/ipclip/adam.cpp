#include "ipclip/adam.h"

#include <cmath>

namespace ipclip {

void Adam::step(const std::map<std::string, torch::Tensor>& params, double lr, const Options& o) {
  torch::NoGradGuard noGrad;
  ++steps;
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(steps));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(steps));
  for (const auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    auto g = p.grad();
    if (o.weightDecay != 0) g = g.add(p, o.weightDecay);
    auto& m = expAvg[name];
    auto& v = expAvgSq[name];
    if (!m.defined()) {
      m = torch::zeros_like(p);
      v = torch::zeros_like(p);
    }
    m.mul_(o.beta1).add_(g, 1 - o.beta1);
    v.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(o.eps);
    p.addcdiv_(m, denom, -lr / bc1);
  }
}

}  // namespace ipclip
