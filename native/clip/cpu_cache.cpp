#include "clip/cpu_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

namespace ipclip {

namespace {

constexpr size_t kMinCached = size_t{1} << 20;    // below: libtorch's own allocation
constexpr size_t kGranularity = size_t{1} << 16;  // sizes rounded up to 64 KiB, so near sizes share blocks

class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) const override {
    void* p = n < kMinCached ? c10::alloc_cpu(n) : take(roundUp(n));
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  // Data and context are the same pointer, so raw_allocate works too.
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void setCap(int64_t cap) {
    std::lock_guard<std::mutex> lock(mutex_);
    cap_ = static_cast<size_t>(cap);
    trimTo(cap_);
  }
  void releaseAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    trimTo(0);
  }
  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    CpuCacheStats s;
    s.installed = true;
    s.capBytes = static_cast<int64_t>(cap_);
    s.cachedBytes = static_cast<int64_t>(cached_);
    s.liveBytes = static_cast<int64_t>(live_);
    s.hits = hits_;
    s.misses = misses_;
    return s;
  }

  static CachingCpuAllocator& instance() {
    static auto* a = new CachingCpuAllocator();  // never destroyed: tensors may be freed during process exit
    return *a;
  }

 private:
  static size_t roundUp(size_t n) { return (n + kGranularity - 1) / kGranularity * kGranularity; }

  static void release(void* p) { instance().give(p); }

  void* take(size_t size) const {
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = bySize_.find(size);
    if (it != bySize_.end()) {
      void* p = it->second->second;
      age_.erase(it->second);
      bySize_.erase(it);
      cached_ -= size;
      live_ += size;
      sizes_[p] = size;
      ++hits_;
      return p;
    }
    ++misses_;
    // Make room first: the cache only ever holds memory the process already had, never more than its peak.
    trimTo(cached_ > size ? cached_ - size : 0);
    lock.unlock();
    void* p = c10::alloc_cpu(size);  // throws c10::Error when out of memory; nothing was recorded
    lock.lock();
    sizes_[p] = size;
    live_ += size;
    return p;
  }

  void give(void* p) const {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) {  // a block under kMinCached: libtorch's own
      c10::free_cpu(p);
      return;
    }
    const size_t size = it->second;
    sizes_.erase(it);
    live_ -= size;
    if (size > cap_) {
      c10::free_cpu(p);
      return;
    }
    trimTo(cap_ - size);
    age_.emplace_back(size, p);
    bySize_.emplace(size, std::prev(age_.end()));
    cached_ += size;
  }

  // Frees the oldest cached blocks until at most `bytes` stay cached. Called with the mutex held.
  void trimTo(size_t bytes) const {
    while (cached_ > bytes && !age_.empty()) {
      auto [size, p] = age_.front();
      for (auto range = bySize_.equal_range(size); range.first != range.second; ++range.first) {
        if (range.first->second == age_.begin()) {
          bySize_.erase(range.first);
          break;
        }
      }
      age_.pop_front();
      cached_ -= size;
      c10::free_cpu(p);
    }
  }

  using Age = std::list<std::pair<size_t, void*>>;  // cached blocks, oldest first
  mutable std::mutex mutex_;
  mutable Age age_;
  mutable std::multimap<size_t, Age::iterator> bySize_;
  mutable std::unordered_map<void*, size_t> sizes_;  // live cached-size blocks
  mutable size_t cached_ = 0, live_ = 0;
  size_t cap_ = 0;
  mutable int64_t hits_ = 0, misses_ = 0;
};

std::atomic<bool> installed{false};
std::once_flag installOnce;

}  // namespace

void installCpuCache(int64_t capBytes) {
  if (capBytes <= 0 && !installed) return;
  auto& a = CachingCpuAllocator::instance();
  a.setCap(capBytes < 0 ? 0 : capBytes);
  std::call_once(installOnce, [&] {
    // Priority above the default allocator's registration, so a later default registration cannot undo it.
    c10::SetCPUAllocator(&a, /*priority=*/10);
    installed = true;
  });
}

CpuCacheStats cpuCacheStats() {
  if (!installed) return {};
  return CachingCpuAllocator::instance().stats();
}

void releaseCpuCache() {
  if (installed) CachingCpuAllocator::instance().releaseAll();
}

}  // namespace ipclip
