// BatchStream: a loader thread that walks an epoch's permutation and gathers
// each batch (images then labels, uint8) into a ring of host staging slots,
// pinned on CUDA so the upload is a true async DMA. The trainer takes a
// filled slot, queues its upload, and hands the slot back with the copy's
// fence; the loader waits on that fence before it writes the slot again.
//
// Staging::kOnAcquire (the CPU backend) has no loader thread: acquire()
// gathers the batch on the calling thread. There the device is the same
// cores, the gather copies ~78 KB, and a loader thread woken once a step
// competes with the pool's threads for those cores: with it, bench ran 1-7%
// slower in 6 of 6 alternating rounds (2-core AMD EPYC Zen 5 VM, 2026-12-02).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "mlp/backend.h"
#include "mlp/dataset.h"

namespace mlp {

class BatchStream {
 public:
  static constexpr int kSlots = 4;
  enum class Staging { kLoaderThread, kOnAcquire };

  BatchStream(Backend& backend, const Dataset& data, int64_t batch,
              Staging staging = Staging::kLoaderThread);
  ~BatchStream();
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  // Bytes of one staged batch: batch * pixels images, then batch labels.
  std::size_t slot_bytes() const { return slot_bytes_; }
  int64_t batch() const { return batch_; }

  // Starts producing `steps` batches in the given order (a full permutation,
  // or any index list; batch i uses order[i*batch .. (i+1)*batch)).
  void start_epoch(std::vector<uint32_t> order, int64_t steps);
  // Blocks until the next batch is staged (kOnAcquire: until its slot's last
  // upload has finished, then gathers it); returns its slot's host pointer.
  const uint8_t* acquire();
  // Returns the slot acquired last; the loader reuses it once `fence` passed.
  void release(uint64_t fence);

 private:
  struct Slot {
    Buffer host;
    uint64_t fence = 0;  // upload that must finish before the slot is rewritten
    bool full = false;
  };
  void loader_main();
  void gather(int64_t step, uint8_t* dst) const;

  Backend& be_;
  const Dataset& data_;
  int64_t batch_;
  std::size_t slot_bytes_;
  Slot slots_[kSlots];

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint32_t> order_;
  int64_t steps_ = 0;     // in the current epoch
  int64_t produced_ = 0;  // batches the loader has staged this epoch
  int64_t consumed_ = 0;  // batches acquired this epoch
  bool stop_ = false;
  bool gathering_ = false;  // loader is reading order_ outside the lock
  Staging staging_;
  std::thread loader_;
};

}  // namespace mlp
