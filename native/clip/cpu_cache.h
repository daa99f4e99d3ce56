// A caching allocator for libtorch's CPU tensors. Why: a tower's forward allocates activations of tens of MB
// (ViT-B/16, batch 16: [16,197,3072] fp32 is 39 MB), above glibc's largest mmap threshold (32 MB), so every
// forward maps fresh pages and faults on each one's first touch, and returns them on free. Measured on a 2-core
// AMD EPYC (2026-12-02): the faults cost ViT-B/16 encodeImage a quarter of its time (fp32 6.0 → 8.0 img/s, bf16
// 12.4 → 15.6 with the allocator kept on the heap). Blocks of ≥ 1 MiB are kept after free and handed back for
// the next request of the same (rounded) size, as PyTorch's CUDA caching allocator does for device memory.
//
// The footprint is bounded: a request that the cache cannot serve first frees cached blocks of at least its
// size (oldest first), so the process never holds more than its peak of live tensors; and at most `capBytes`
// stay cached while idle. Smaller blocks go straight to libtorch's own aligned allocation.
#pragma once
#include <cstdint>

namespace ipclip {

struct CpuCacheStats {
  bool installed = false;
  int64_t capBytes = 0;
  int64_t cachedBytes = 0;  // freed blocks kept for reuse
  int64_t liveBytes = 0;    // blocks of ≥ 1 MiB in use
  int64_t hits = 0;         // requests served from the cache
  int64_t misses = 0;       // requests of ≥ 1 MiB that needed a new block
};

// Makes the caching allocator libtorch's CPU allocator (once per process; later calls only change the cap).
// capBytes 0 leaves libtorch's default allocator in place.
void installCpuCache(int64_t capBytes);
CpuCacheStats cpuCacheStats();
// Frees every cached (not live) block now.
void releaseCpuCache();

}  // namespace ipclip
