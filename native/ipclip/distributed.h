// ProcessGroup: one rank's membership of a data-parallel job, on libtorch's own distributed engine (c10d): a
// TCPStore for the rendezvous (rank 0 serves it, or torchrun's agent does) and a Gloo (CPU) or NCCL (CUDA builds that have it) process
// group for the collectives. The prompt's training step all-reduces its gradients through one (PromptModel::
// attach); the binding exposes the rest (all-gather, broadcast, barrier) to the trainer.
//
// Every call blocks (the rendezvous, each collective): the binding runs them on worker threads. Calls are
// serialised by an internal mutex, so collectives leave each rank in the order they were made; every rank must
// make the same collectives in the same order, as with torch.distributed. A failed collective (a peer exited,
// the timeout passed) is ERR_DISTRIBUTED, and the group is broken from then on: later calls fail at once with
// the first error instead of waiting for peers that will not come.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/types.h>

namespace ipclip {

struct DistributedOptions {
  std::string backend = "gloo";  // 'gloo' | 'nccl'
  int rank = 0;
  int worldSize = 1;
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  int64_t timeoutMs = 300000;  // rendezvous and every collective
  // torchrun's agent serves the store at masterAddr:masterPort (its workers see TORCHELASTIC_USE_AGENT_STORE=True):
  // every rank, rank 0 included, connects as a client, and the job's keys live under /worker/attempt_<attempt>
  // (the agent's TORCHELASTIC_RESTART_COUNT), as torch.distributed's env:// rendezvous keeps them.
  bool agentStore = false;
  int attempt = 0;
};

// Whether this build has `backend` ('gloo': the Gloo headers were found at build time; 'nccl': a CUDA libtorch
// with ProcessGroupNCCL).
bool distributedBackendAvailable(const std::string& backend);
// ERR_INVALID_ARGUMENT for an unknown backend, ERR_DEVICE (saying what is missing) for one this build lacks.
void requireDistributedBackend(const std::string& backend);

class ProcessGroup {
 public:
  // Joins the job: connects to (rank 0 without agentStore: serves) the store at masterAddr:masterPort and waits
  // for every rank.
  // ERR_DEVICE for a backend this build lacks, ERR_DISTRIBUTED when the rendezvous fails or times out.
  explicit ProcessGroup(const DistributedOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return options_.rank; }
  int worldSize() const { return options_.worldSize; }
  const DistributedOptions& options() const { return options_; }

  // In place: the element-wise sum over ranks (identical bytes on every rank afterwards). `t` is contiguous;
  // on a device the backend cannot read it is reduced through a host copy.
  void allReduceSum(torch::Tensor& t);
  // Every rank's `t` (same shape and dtype on every rank), in rank order.
  std::vector<torch::Tensor> allGather(const torch::Tensor& t);
  // Rows [n_r, k] of every rank (n_r may differ, k may not), concatenated in rank order: [Σ n_r, k].
  torch::Tensor allGatherRows(const torch::Tensor& rows);
  // In place: rank `root`'s `t` on every rank.
  void broadcast(torch::Tensor& t, int root);
  void barrier();
  // Leaves the job (idempotent): later calls fail with ERR_DISPOSED-like ERR_DISTRIBUTED.
  void close();

 private:
  struct Impl;
  template <typename Fn>
  void collective(const char* what, Fn&& fn);
  DistributedOptions options_;
  std::mutex mutex_;
  std::unique_ptr<Impl> impl_;
  std::string broken_;  // the first failure; non-empty: every later call fails with it
};

}  // namespace ipclip
