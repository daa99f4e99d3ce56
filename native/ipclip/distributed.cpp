#include "ipclip/distributed.h"

#include <chrono>
#include <cstdlib>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

// Gloo: Debian's libtorch exports ProcessGroupGloo, but its header compiles only with USE_C10D_GLOO and the gloo
// headers (libgloo-dev) present. Without them the backend is reported unavailable instead of failing the build.
#if __has_include(<gloo/config.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#define IPCLIP_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
// NCCL: only a CUDA libtorch has ProcessGroupNCCL (CMakeLists.txt defines IPCLIP_WITH_NCCL for one).
#if defined(IPCLIP_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "common/errors.h"

namespace ipclip {

bool distributedBackendAvailable(const std::string& backend) {
#if defined(IPCLIP_HAVE_GLOO)
  if (backend == "gloo") return true;
#endif
#if defined(IPCLIP_WITH_NCCL)
  if (backend == "nccl") return true;
#endif
  return false;
}

void requireDistributedBackend(const std::string& backend) {
  if (backend != "gloo" && backend != "nccl")
    fail("ERR_INVALID_ARGUMENT", "distributed backend must be 'gloo' or 'nccl', got '" + backend + "'");
  if (distributedBackendAvailable(backend)) return;
  if (backend == "nccl")
    fail("ERR_DEVICE", "this build of ipclip has no NCCL backend (it needs a CUDA libtorch with ProcessGroupNCCL); "
                       "use backend 'gloo'");
  fail("ERR_DEVICE", "this build of ipclip has no Gloo backend: the gloo headers were not found when the addon was "
                     "built (Debian: apt-get install libgloo-dev, then rebuild with `npx ipclip build`)");
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  bool hostOnly = true;  // Gloo reduces host tensors: device tensors go through a host copy
};

namespace {

std::string messageOf(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& err) {
    return err.what_without_backtrace();
  } catch (const std::exception& err) {
    return err.what();
  } catch (...) {
    return "unknown failure";
  }
}

std::string who(const DistributedOptions& o) {
  return "rank " + std::to_string(o.rank) + " of " + std::to_string(o.worldSize);
}

#if defined(IPCLIP_HAVE_GLOO)
std::shared_ptr<::gloo::transport::Device> glooDevice(const std::string& masterAddr) {
  // GLOO_SOCKET_IFNAME names the interface, as with torch.distributed; a job on the loopback address stays on it;
  // otherwise the machine's hostname address (Gloo's default, falling back to loopback).
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (masterAddr == "127.0.0.1" || masterAddr == "localhost" || masterAddr == "::1")
    return c10d::ProcessGroupGloo::createDeviceForHostname(masterAddr);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

}  // namespace

ProcessGroup::ProcessGroup(const DistributedOptions& o) : options_(o) {
  if (o.worldSize < 1 || o.rank < 0 || o.rank >= o.worldSize)
    fail("ERR_INVALID_ARGUMENT", "distributed: rank must lie in [0, worldSize)");
  if (o.masterPort < 1 || o.masterPort > 65535) fail("ERR_INVALID_ARGUMENT", "distributed: masterPort must lie in [1, 65535]");
  if (o.timeoutMs < 1) fail("ERR_INVALID_ARGUMENT", "distributed: timeoutMs must be positive");
  requireDistributedBackend(o.backend);
  const auto timeout = std::chrono::milliseconds(o.timeoutMs);
  auto impl = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.masterPort);
    so.timeout = timeout;
    if (o.agentStore) {
      // The agent's store outlives this attempt and holds the agent's own keys: a client whose keys are scoped
      // to this attempt, so a worker group restarted by the agent never reads a failed attempt's addresses.
      // Nobody counts workers on the agent's store (only a serving store waits for them): the Gloo rendezvous
      // below is what waits for every rank.
      so.isServer = false;
      so.waitWorkers = false;
      auto client = c10::make_intrusive<c10d::TCPStore>(o.masterAddr, so);
      impl->store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(o.attempt), client);
    } else {
      so.isServer = o.rank == 0;
      so.numWorkers = static_cast<std::size_t>(o.worldSize);
      so.waitWorkers = true;
      impl->store = c10::make_intrusive<c10d::TCPStore>(o.masterAddr, so);
    }
#if defined(IPCLIP_HAVE_GLOO)
    if (o.backend == "gloo") {
      auto go = c10d::ProcessGroupGloo::Options::create(timeout);
      go->devices.push_back(glooDevice(o.masterAddr));
      go->threads = 1;  // one collective at a time: the step makes one call
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, o.rank, o.worldSize, go);
      impl->hostOnly = true;
    }
#endif
#if defined(IPCLIP_WITH_NCCL)
    if (o.backend == "nccl") {
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, o.rank, o.worldSize, no);
      impl->hostOnly = false;
    }
#endif
  } catch (...) {
    fail("ERR_DISTRIBUTED", who(o) + ": could not join the job at " + o.masterAddr + ":" + std::to_string(o.masterPort) +
                                " within " + std::to_string(o.timeoutMs) + " ms (" + messageOf(std::current_exception()) + ")");
  }
  impl_ = std::move(impl);
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  impl_.reset();
}

template <typename Fn>
void ProcessGroup::collective(const char* what, Fn&& fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!broken_.empty()) fail("ERR_DISTRIBUTED", broken_);
  if (!impl_) fail("ERR_DISTRIBUTED", who(options_) + ": the process group is closed");
  try {
    fn(*impl_);
  } catch (const IpclipError&) {
    throw;
  } catch (...) {
    broken_ = who(options_) + ": " + what + " failed: a peer process exited or did not answer within " +
              std::to_string(options_.timeoutMs) + " ms (" + messageOf(std::current_exception()) + ")";
    fail("ERR_DISTRIBUTED", broken_);
  }
}

namespace {
// The tensor the backend reads: `t` itself, or a host copy for Gloo.
torch::Tensor onBackend(const torch::Tensor& t, bool hostOnly) {
  return hostOnly && !t.is_cpu() ? t.to(torch::kCPU) : t;
}
}  // namespace

void ProcessGroup::allReduceSum(torch::Tensor& t) {
  if (!t.is_contiguous()) fail("ERR_NATIVE", "allReduceSum: the tensor must be contiguous");
  collective("all-reduce", [&](Impl& s) {
    std::vector<torch::Tensor> v{onBackend(t, s.hostOnly)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    s.group->allreduce(v, opts)->wait();
    if (!v[0].is_same(t)) t.copy_(v[0]);
  });
}

std::vector<torch::Tensor> ProcessGroup::allGather(const torch::Tensor& t) {
  std::vector<torch::Tensor> out;
  collective("all-gather", [&](Impl& s) {
    std::vector<torch::Tensor> in{onBackend(t.contiguous(), s.hostOnly)};
    std::vector<std::vector<torch::Tensor>> gathered(1);
    for (int r = 0; r < options_.worldSize; ++r) gathered[0].push_back(torch::empty_like(in[0]));
    s.group->allgather(gathered, in)->wait();
    out = std::move(gathered[0]);
  });
  return out;
}

torch::Tensor ProcessGroup::allGatherRows(const torch::Tensor& rows) {
  if (rows.dim() != 2) fail("ERR_NATIVE", "allGatherRows: rows must be [n, k]");
  auto counts = allGather(torch::full({1}, rows.size(0), torch::kInt64));
  int64_t most = 0;
  for (auto& c : counts) most = std::max(most, c.item<int64_t>());
  if (most == 0) return rows.new_empty({0, rows.size(1)});
  auto padded = torch::zeros({most, rows.size(1)}, rows.options());
  if (rows.size(0) > 0) padded.narrow(0, 0, rows.size(0)).copy_(rows);
  auto all = allGather(padded);
  std::vector<torch::Tensor> parts;
  for (size_t r = 0; r < all.size(); ++r) parts.push_back(all[r].narrow(0, 0, counts[r].item<int64_t>()));
  return torch::cat(parts).to(rows.device());
}

void ProcessGroup::broadcast(torch::Tensor& t, int root) {
  if (root < 0 || root >= options_.worldSize) fail("ERR_INVALID_ARGUMENT", "broadcast: root must lie in [0, worldSize)");
  if (!t.is_contiguous()) fail("ERR_NATIVE", "broadcast: the tensor must be contiguous");
  collective("broadcast", [&](Impl& s) {
    std::vector<torch::Tensor> v{onBackend(t, s.hostOnly)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    s.group->broadcast(v, opts)->wait();
    if (!v[0].is_same(t)) t.copy_(v[0]);
  });
}

void ProcessGroup::barrier() {
  collective("barrier", [&](Impl& s) { s.group->barrier()->wait(); });
}

}  // namespace ipclip
