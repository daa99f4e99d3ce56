#include "clip/onednn_kernels.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/errors.h"

#ifdef IPCLIP_WITH_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace ipclip {

#ifdef IPCLIP_WITH_DNNL

bool packedLinearAvailable() { return true; }

namespace {

using Desc = dnnl::memory::desc;
using DataType = dnnl::memory::data_type;
using Tag = dnnl::memory::format_tag;

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

DataType dnnlType(torch::ScalarType t) {
  if (t == torch::kFloat32) return DataType::f32;
  if (t == torch::kBFloat16) return DataType::bf16;
  fail("ERR_INTERNAL", std::string("packed linear: no oneDNN kernel for ") + c10::toString(t));
}

// One direction of the layer (forward y = x·wᵀ, or the input gradient dx = dy·w): the weight packed in the layout
// the primitive chose, and a primitive per (row count, epilogue). oneDNN's brgemm matmul asks for the same weight
// layout at every row count (checked at 1 … 4000 rows, fp32 and bf16): the first pack serves all, and a row count
// whose primitive asked for another layout would get its own pack.
struct Direction {
  int64_t in = 0, out = 0;  // the product is [M,in]·[in,out]
  Desc plainWeight;         // the torch weight as oneDNN sees it
  void* weightData = nullptr;
  struct Kernel {
    dnnl::matmul primitive;
    Desc src, dst, scratchpad;
    std::shared_ptr<dnnl::memory> weights;
  };
  std::shared_ptr<dnnl::memory> packed;
  std::unordered_map<int64_t, Kernel> kernels;  // key: M · 2 + epilogue

  Kernel& kernel(int64_t M, Epilogue epilogue, DataType type, const Desc& bias) {
    const int64_t key = M * 2 + (epilogue == Epilogue::QuickGelu ? 1 : 0);
    auto found = kernels.find(key);
    if (found != kernels.end()) return found->second;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per call, from torch's allocator: thread-safe
    if (epilogue == Epilogue::QuickGelu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.702f, 0.f);  // x·σ(1.702·x)
      attr.set_post_ops(ops);
    }
    const Desc src({M, in}, type, Tag::ab), dst({M, out}, type, Tag::ab), anyWeight({in, out}, type, Tag::any);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, anyWeight, bias, dst), attr, cpuEngine());
    Kernel k{dnnl::matmul(pd), src, dst, pd.scratchpad_desc(), nullptr};
    if (!packed || packed->get_desc() != pd.weights_desc()) {
      auto memory = std::make_shared<dnnl::memory>(pd.weights_desc(), cpuEngine());
      dnnl::memory plain(plainWeight, cpuEngine(), weightData);
      dnnl::stream stream(cpuEngine());
      dnnl::reorder(plain, *memory).execute(stream, plain, *memory);
      stream.wait();
      if (!packed) packed = memory;
      k.weights = memory;
    } else {
      k.weights = packed;
    }
    return kernels.emplace(key, std::move(k)).first->second;
  }
};

}  // namespace

// In-place writes bump a tensor's version; inference tensors (made under c10::InferenceMode) keep none and cannot
// be written outside it.
static uint32_t versionOf(const torch::Tensor& t) { return t.defined() && !t.is_inference() ? t._version() : 0; }

struct PackedLinear::Impl {
  torch::Tensor weight, bias;  // the frozen tensors it was packed from (kept alive: the plain weight is read on repacks)
  uint32_t weightVersion = 0, biasVersion = 0;
  DataType type = DataType::f32;
  Desc biasDesc;
  Direction forward, backward;
  std::mutex mutex;  // guards the primitive maps; execution itself needs no lock (user scratchpad)
};

PackedLinear::PackedLinear(const torch::Tensor& w, const torch::Tensor& b) : impl_(std::make_unique<Impl>()) {
  auto& s = *impl_;
  if (w.dim() != 2 || !w.device().is_cpu() || !w.is_contiguous())
    fail("ERR_INTERNAL", "packed linear: the weight must be a contiguous 2-D CPU tensor");
  s.weight = w;
  s.bias = b;
  s.weightVersion = versionOf(w);
  s.biasVersion = versionOf(b);
  s.type = dnnlType(w.scalar_type());
  const int64_t N = w.size(0), K = w.size(1);
  if (b.defined()) {
    if (b.dim() != 1 || b.size(0) != N || !b.is_contiguous() || !b.device().is_cpu())
      fail("ERR_INTERNAL", "packed linear: the bias must be a contiguous [N] CPU tensor");
    s.biasDesc = Desc({1, N}, dnnlType(b.scalar_type()), Tag::ab);
  }
  // w is [N,K] row-major: as the [K,N] right-hand side of x·wᵀ it is column-major ("ba"); as the [N,K] right-hand
  // side of dy·w it is row-major ("ab").
  s.forward.in = K;
  s.forward.out = N;
  s.forward.plainWeight = Desc({K, N}, s.type, Tag::ba);
  s.forward.weightData = w.data_ptr();
  s.backward.in = N;
  s.backward.out = K;
  s.backward.plainWeight = Desc({N, K}, s.type, Tag::ab);
  s.backward.weightData = w.data_ptr();
}

PackedLinear::~PackedLinear() = default;

bool PackedLinear::matches(const torch::Tensor& w, const torch::Tensor& b) const {
  const auto& s = *impl_;
  // By memory, not by tensor object: a view made afresh per call (the patch embedding's [W,3P²] view of the conv
  // weight) shares its base's storage and version counter. The pack keeps the tensor it was made from, so that
  // memory cannot be freed and reused by another tensor while the pack lives.
  const auto same = [](const torch::Tensor& a, const torch::Tensor& c, uint32_t version) {
    return a.data_ptr() == c.data_ptr() && a.sizes() == c.sizes() && a.strides() == c.strides() &&
           a.scalar_type() == c.scalar_type() && versionOf(c) == version;
  };
  if (!same(s.weight, w, s.weightVersion)) return false;
  if (s.bias.defined() != b.defined()) return false;
  return !b.defined() || same(s.bias, b, s.biasVersion);
}

// Runs one direction on x [..., d.in] → [..., d.out].
static torch::Tensor execute(Direction& d, std::mutex& mutex, DataType type, const Desc& biasDesc, const torch::Tensor& bias,
                             const torch::Tensor& x, Epilogue epilogue) {
  if (x.size(-1) != d.in) fail("ERR_INTERNAL", "packed linear: input width does not match the weight");
  auto sizes = x.sizes().vec();
  sizes.back() = d.out;
  auto y = torch::empty(sizes, x.options());
  const int64_t M = x.numel() / d.in;
  if (M == 0) return y;
  Direction::Kernel* k;
  {
    std::lock_guard<std::mutex> lock(mutex);
    k = &d.kernel(M, epilogue, type, biasDesc);
  }
  // oneDNN runs its parallel regions with this thread's OpenMP thread count; libtorch sets that lazily per thread
  // (the addon's threads setting) on its first parallel op, so ask for it first as libtorch's own ops do.
  (void)at::get_num_threads();
  auto scratch = torch::empty({static_cast<int64_t>(k->scratchpad.get_size())}, torch::TensorOptions().dtype(torch::kUInt8));
  dnnl::stream stream(cpuEngine());
  dnnl::memory src(k->src, cpuEngine(), x.data_ptr()), dst(k->dst, cpuEngine(), y.data_ptr());
  dnnl::memory pad(k->scratchpad, cpuEngine(), scratch.data_ptr());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *k->weights}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}};
  if (biasDesc) args.emplace(DNNL_ARG_BIAS, dnnl::memory(biasDesc, cpuEngine(), bias.data_ptr()));
  k->primitive.execute(stream, args);
  stream.wait();
  return y;
}

torch::Tensor PackedLinear::forward(const torch::Tensor& x, Epilogue epilogue) {
  auto& s = *impl_;
  if (x.scalar_type() != s.weight.scalar_type()) fail("ERR_INTERNAL", "packed linear: input and weight dtypes differ");
  return execute(s.forward, s.mutex, s.type, s.biasDesc, s.bias, x.contiguous(), epilogue);
}

torch::Tensor PackedLinear::backwardInput(const torch::Tensor& dy) {
  auto& s = *impl_;
  return execute(s.backward, s.mutex, s.type, Desc(), torch::Tensor(), dy.to(s.weight.scalar_type()).contiguous(), Epilogue::None);
}

namespace {

Desc stridedDesc(const torch::Tensor& t, DataType type) {
  return Desc(t.sizes().vec(), type, t.strides().vec());
}

// A batched product's primitive per shape and strides, built once; null where oneDNN has only its reference kernel.
struct BatchedMatmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
};

struct BatchedMatmuls {
  std::mutex mutex;
  std::map<std::vector<int64_t>, std::shared_ptr<BatchedMatmul>> cache;

  std::shared_ptr<BatchedMatmul> get(const Desc& a, const Desc& b, const Desc& c, float scale,
                                                    const std::vector<int64_t>& key) {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = cache.find(key);
    if (found != cache.end()) return found->second;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (scale != 1.f) attr.set_output_scales(0, {scale});
    std::shared_ptr<BatchedMatmul> made;
    try {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, cpuEngine());
      if (std::string(pd.impl_info_str()).find("ref") == std::string::npos)
        made = std::make_shared<BatchedMatmul>(BatchedMatmul{pd, dnnl::matmul(pd)});
    } catch (const dnnl::error&) {
      made.reset();
    }
    cache.emplace(key, made);
    return made;
  }
};

BatchedMatmuls& batchedMatmuls() {
  static BatchedMatmuls cache;
  return cache;
}

// c = scale · a·b for 4-D strided views; false where oneDNN has no optimised kernel for them.
bool batchedMatmul(const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, float scale) {
  const auto type = dnnlType(a.scalar_type());
  std::vector<int64_t> key;
  for (const torch::Tensor* t : {&a, &b, static_cast<const torch::Tensor*>(&c)}) {
    key.insert(key.end(), t->sizes().begin(), t->sizes().end());
    key.insert(key.end(), t->strides().begin(), t->strides().end());
  }
  key.push_back(static_cast<int64_t>(type));
  key.push_back(static_cast<int64_t>(std::llround(scale * 1e9)));
  const Desc da = stridedDesc(a, type), db = stridedDesc(b, type), dc = stridedDesc(c, type);
  auto mm = batchedMatmuls().get(da, db, dc, scale, key);
  if (!mm) return false;
  (void)at::get_num_threads();  // this thread's OpenMP thread count, as in execute()
  const auto& pd = mm->pd;
  auto scratch = torch::empty({static_cast<int64_t>(pd.scratchpad_desc().get_size())}, torch::TensorOptions().dtype(torch::kUInt8));
  dnnl::stream stream(cpuEngine());
  mm->primitive.execute(stream, {{DNNL_ARG_SRC, dnnl::memory(da, cpuEngine(), a.data_ptr())},
                             {DNNL_ARG_WEIGHTS, dnnl::memory(db, cpuEngine(), b.data_ptr())},
                             {DNNL_ARG_DST, dnnl::memory(dc, cpuEngine(), c.data_ptr())},
                             {DNNL_ARG_SCRATCHPAD, dnnl::memory(pd.scratchpad_desc(), cpuEngine(), scratch.data_ptr())}});
  stream.wait();
  return true;
}

}  // namespace

torch::Tensor attentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const auto B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  if (q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1) return {};
  auto scores = torch::empty({B, H, T, k.size(2)}, q.options());                 // [B,H,T,T]
  if (!batchedMatmul(q, k.transpose(2, 3), scores, static_cast<float>(scale))) return {};
  scores = torch::softmax(scores, -1);
  auto out = torch::empty({B, T, H, d}, q.options());                            // = [B,T,W], out_proj's input
  auto outHeads = out.permute({0, 2, 1, 3});                                     // [B,H,T,d] view of it
  if (!batchedMatmul(scores, v, outHeads, 1.f)) return {};
  return out.view({B, T, H * d});
}

#else  // built without oneDNN's C++ API

bool packedLinearAvailable() { return false; }
struct PackedLinear::Impl {};
PackedLinear::PackedLinear(const torch::Tensor&, const torch::Tensor&) {
  fail("ERR_UNSUPPORTED", "this addon was built without oneDNN's C++ API (Debian: apt-get install libdnnl-dev, then rebuild)");
}
PackedLinear::~PackedLinear() = default;
bool PackedLinear::matches(const torch::Tensor&, const torch::Tensor&) const { return false; }
torch::Tensor PackedLinear::forward(const torch::Tensor&, Epilogue) { return {}; }
torch::Tensor PackedLinear::backwardInput(const torch::Tensor&) { return {}; }
torch::Tensor attentionCore(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, double) { return {}; }

#endif

namespace {

// The autograd node of packedLinear: dx = dy·w through the layer's backward pack. It holds the pack, so a graph
// outliving the module that made it still has its weights.
struct PackedLinearBackward : torch::autograd::Node {
  std::shared_ptr<PackedLinear> pack;
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {torch::Tensor()};
    return {pack->backwardInput(grads[0])};
  }
  std::string name() const override { return "PackedLinearBackward"; }
};

}  // namespace

torch::Tensor packedLinear(const std::shared_ptr<PackedLinear>& pack, const torch::Tensor& x, Epilogue epilogue) {
  const bool needsGrad = torch::GradMode::is_enabled() && x.requires_grad();
  if (needsGrad && epilogue != Epilogue::None)
    fail("ERR_INTERNAL", "packed linear: a fused epilogue has no backward; apply the activation separately");
  torch::Tensor y;
  {
    torch::NoGradGuard noGrad;
    y = pack->forward(x, epilogue);
  }
  if (needsGrad) {
    auto node = std::shared_ptr<PackedLinearBackward>(new PackedLinearBackward(), torch::autograd::deleteNode);
    node->pack = pack;
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    torch::autograd::set_history(y, node);
  }
  return y;
}

}  // namespace ipclip
