#pragma once
// Multi-tensor launches (AdamW, gradient clipping): one launch covers up to kMultiTensorMax
// tensors instead of one each. The host packs the records (any struct with an element count `n`)
// and a prefix table of kMultiTensorChunk-element chunks into one kernel argument block; block c
// finds its tensor by a binary search in that table and works on elements [begin, end) of it.
#include <cstdint>
#include <vector>

namespace titan::cuda {

constexpr int kMultiTensorMax = 48;
constexpr std::int64_t kMultiTensorChunk = 65536;

template <class T>
struct MultiTensorBatch {
  T t[kMultiTensorMax];
  int chunk_begin[kMultiTensorMax + 1];  // prefix sums of chunks per tensor
  int count;
};

// Block `c`'s tensor, and the range [*begin, *end) of its elements.
template <class T>
__device__ __forceinline__ const T& multi_tensor_chunk(const MultiTensorBatch<T>& batch, int c, std::int64_t* begin,
                                                        std::int64_t* end) {
  int lo = 0, hi = batch.count - 1;
  while (lo < hi) {  // last tensor whose first chunk is <= c
    const int mid = (lo + hi + 1) / 2;
    if (batch.chunk_begin[mid] <= c) lo = mid;
    else hi = mid - 1;
  }
  const T& t = batch.t[lo];
  *begin = std::int64_t(c - batch.chunk_begin[lo]) * kMultiTensorChunk;
  *end = *begin + kMultiTensorChunk < t.n ? *begin + kMultiTensorChunk : t.n;
  return t;
}

// Packs `tensors` (empty ones skipped) into batches and calls launch(batch, chunks) for each.
template <class T, class Launch>
void for_each_multi_tensor_batch(const std::vector<T>& tensors, Launch&& launch) {
  std::size_t i = 0;
  while (i < tensors.size()) {
    MultiTensorBatch<T> batch{};
    int chunks = 0;
    for (; i < tensors.size() && batch.count < kMultiTensorMax; ++i) {
      if (tensors[i].n == 0) continue;
      batch.t[batch.count] = tensors[i];
      batch.chunk_begin[batch.count] = chunks;
      chunks += int((tensors[i].n + kMultiTensorChunk - 1) / kMultiTensorChunk);
      ++batch.count;
    }
    batch.chunk_begin[batch.count] = chunks;
    if (batch.count == 0) break;
    launch(batch, chunks);
  }
}

}  // namespace titan::cuda
