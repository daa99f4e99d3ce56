#include "clip/linear.h"

#include <ATen/Context.h>
#include <ATen/ops/mkldnn_linear.h>
#include <torch/nn/functional/linear.h>

#include <fstream>
#include <sched.h>
#include <sstream>
#include <set>

#include "common/errors.h"

namespace ipclip {

const char* linearKernelName(LinearKernel k) { return k == LinearKernel::OneDnn ? "onednn" : "blas"; }

LinearKernel parseLinearKernel(const std::string& s) {
  if (s == "blas") return LinearKernel::Blas;
  if (s == "onednn") return LinearKernel::OneDnn;
  if (s == "auto") return cpuFeatures().avx512f && at::hasMKLDNN() ? LinearKernel::OneDnn : LinearKernel::Blas;
  fail("ERR_INVALID_ARGUMENT", "unknown linear kernel '" + s + "' (use 'auto', 'onednn' or 'blas')");
}

bool usesOneDnn(const torch::Tensor& x, const torch::Tensor& w, LinearKernel kernel) {
  const auto t = x.scalar_type();
  return kernel == LinearKernel::OneDnn && x.device().is_cpu() && (t == torch::kFloat32 || t == torch::kBFloat16) &&
         w.scalar_type() == t && at::hasMKLDNN();
}

torch::Tensor quickGelu(const torch::Tensor& h) {
  if (torch::GradMode::is_enabled() && h.requires_grad()) return h * torch::sigmoid(1.702 * h);
  // The same values, bit for bit, when no backward needs the intermediates (inference, the frozen vision tower):
  // s = 1.702·h, σ(s) in place, times h in place.
  auto s = h.mul(1.702);
  s.sigmoid_();
  return s.mul_(h);
}

namespace {

bool frozen(const torch::Tensor& t) { return !t.defined() || !t.requires_grad() || !torch::GradMode::is_enabled(); }

torch::Tensor unpackedLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, LinearKernel kernel) {
  if (!usesOneDnn(x, w, kernel) || x.scalar_type() != torch::kFloat32) return torch::nn::functional::linear(x, w, b);
  // libtorch's oneDNN inner product takes a 2-D input in its own layout and returns its own layout: one copy in,
  // one out. The weight stays a dense tensor (libtorch 1.13 offers no prepacked linear weight, and its backward needs
  // the dense one), so oneDNN reorders it to its blocked layout inside every call.
  const auto K = x.size(-1);
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  auto in = x.reshape({-1, K}).contiguous().to_mkldnn();
  auto y = b.defined() ? at::mkldnn_linear(in, w, b) : at::mkldnn_linear(in, w);
  return y.to_dense().view(sizes);
}

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, LinearKernel kernel,
                     LinearPack* pack, Epilogue epilogue) {
  if (pack && packedLinearAvailable() && usesOneDnn(x, w, kernel) && w.is_contiguous() && frozen(w) && frozen(b) &&
      (!b.defined() || b.is_contiguous())) {
    if (!pack->packed || !pack->packed->matches(w, b)) pack->packed = std::make_shared<PackedLinear>(w, b);
    const bool needsGrad = torch::GradMode::is_enabled() && x.requires_grad();
    if (!needsGrad || epilogue == Epilogue::None) return packedLinear(pack->packed, x, epilogue);
    return quickGelu(packedLinear(pack->packed, x, Epilogue::None));  // its backward needs the pre-activation
  }
  auto y = unpackedLinear(x, w, b, kernel);
  return epilogue == Epilogue::QuickGelu ? quickGelu(y) : y;
}

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    bool flagsSeen = false;
    cpu_set_t allowed;
    const bool haveMask = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
    int processor = -1;
    std::string physicalId;
    std::set<std::pair<std::string, std::string>> cores;
    while (std::getline(in, line)) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string key = line.substr(0, colon);
      while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
      const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
      if (key == "processor") processor = std::atoi(value.c_str());
      if (key == "physical id") physicalId = value;
      if (key == "core id" && (!haveMask || (processor >= 0 && processor < CPU_SETSIZE && CPU_ISSET(processor, &allowed))))
        cores.emplace(physicalId, value);
      if (key == "model name" && f.model.empty()) f.model = value;
      if (key == "cpu MHz" && f.mhz == 0) f.mhz = std::atof(value.c_str());
      if (key == "flags" && !flagsSeen) {
        flagsSeen = true;
        std::istringstream words(value);
        std::set<std::string> flags;
        for (std::string w; words >> w;) flags.insert(w);
        f.avx2 = flags.count("avx2") > 0;
        f.avx512f = flags.count("avx512f") > 0;
        f.avx512bf16 = flags.count("avx512_bf16") > 0;
        f.amxBf16 = flags.count("amx_bf16") > 0;
      }
    }
    f.physicalCores = static_cast<int>(cores.size());
    return f;
  }();
  return features;
}

}  // namespace ipclip
