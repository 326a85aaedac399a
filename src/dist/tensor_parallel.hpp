#pragma once
// Tensor parallelism's communication as autograd functions (DESIGN.md section 6), and how a TP
// plan splits the parameters. The model never calls these: the parallelize step
// (models/llama3/parallelize.cpp) puts them in module hooks, as TorchTitan's parallelize_module
// does with DTensor layouts.
//
// Layouts, for a TP group of T ranks and activations [B, S, ...]:
//   sequence shard  [B, S/T, ...]: rank t holds positions [t S/T, (t + 1) S/T) (sequence parallel)
//   replicated      [B, S, ...] on every rank
//   partial         [B, S, ...] on every rank, the true value being the sum over ranks (the output
//                   of a row-wise parallel Linear or a vocabulary-sharded embedding)
//   column shard    [..., C/T]: rank t holds columns [t C/T, (t + 1) C/T) (a column-wise Linear's output)
// Reductions run in float32 whatever the activation dtype (bf16 sums rounded once, after).
#include <functional>
#include <map>
#include <string>

#include "autograd/variable.hpp"
#include "dist/process_group.hpp"
#include "nn/layers.hpp"

namespace titan::dist {

using autograd::Variable;

// sequence shard -> replicated; backward: reduce-scatter (sum) of the gradient to the shard.
Variable all_gather_sequence(const Variable& x, ProcessGroup& group);
// The same, for an input every one of `consumers` will read: when they all supply an input codec
// of one kind (Float8Linear: e4m3 with the whole tensor's scale), the shard travels encoded (1 byte
// per element) and the consumers are handed the gathered encoding; otherwise as above.
Variable all_gather_sequence(const Variable& x, ProcessGroup& group, const std::vector<nn::Linear*>& consumers);
// partial -> sequence shard of the sum; backward: all-gather of the gradient. When `x` is the
// output of `producer` (a row-wise Linear) that supplies an output-gradient codec (Float8Linear:
// e5m2 with the whole tensor's scale), the gradient shard travels encoded and the producer is
// handed the gathered encoding.
Variable reduce_scatter_sequence(const Variable& x, ProcessGroup& group, nn::Linear* producer = nullptr);
// column shard -> replicated; backward: this rank's columns of the gradient (the loss is the same
// on every rank, so is the gradient of the replicated value).
Variable all_gather_columns(const Variable& x, ProcessGroup& group);
// Loss parallel: the mean cross-entropy of logits [N, V/T] that are columns [first_col, ...) of
// the full logits, without gathering them: one MAX all-reduce of the row maxima, one SUM
// all-reduce of the rows' exp sums and target logits ([2, N] float64). Every rank gets the same
// scalar (float32 for bf16 logits); backward needs no communication.
Variable vocab_parallel_cross_entropy(const Variable& logits, const Tensor& targets, std::int64_t first_col,
                                      ProcessGroup& group, std::int64_t ignore_index = -100);

// Async TP (parallelism.enable_async_tensor_parallel, TorchTitan's fused all-gather-matmul and
// matmul-reduce-scatter): each pair decomposed into chunks of the sequence shard's rows, every
// chunk its own non-blocking collective, so later chunks are in flight while the GEMMs of earlier
// ones run. Each chunk's rows are one GEMM call on a row block of the whole product: the values
// are the separate ops' up to the order a GEMM sums in (and to the order of the sum below).
//
// All-gather + Linears: sequence shard x [B, S/T, C] and weights W_i [N_i, C] (TP-local, column-
// wise) -> `gathered`, x over the whole sequence [B, S, C] (no gradient: the gradient reaches x
// through the outputs), and y_i = gathered W_i^T [B, S, N_i]. Backward: dW_i = dy_i^T gathered,
// and x's gradient sum_i dy_i W_i reduce-scattered (float32) chunk by chunk as it is computed.
struct GatheredLinears {
  Variable gathered;
  std::vector<Variable> outputs;
};
GatheredLinears all_gather_linears(const Variable& x, const std::vector<Variable>& weights, ProcessGroup& group);
// Linear + reduce-scatter: x [B, S, K] (this rank's columns), W [N, K] (row-wise) -> the sequence
// shard [B, S/T, N] of the sum over ranks of x W^T (summed in float32). Backward: dy's all-gather
// chunk by chunk, each chunk's rows of dx computed as it arrives; dW = dy_gathered^T x.
Variable linear_reduce_scatter(const Variable& x, const Variable& w, ProcessGroup& group);
// The chunks a rank's sequence shard is split into (TorchTitan's async TP takes one step per rank).
int async_tp_chunks(int tp_size);

// How a TP plan split the parameters: the dim each sharded parameter is split on (0: rows, e.g.
// a column-wise Linear's weight [out/T, in]; 1: columns, a row-wise Linear's [out, in/T]);
// parameters not listed are replicated over the TP group, their gradients partial (each rank
// saw only its sequence shard) until reduce_replicated_gradients sums them.
struct TpLayout {
  int size = 1, rank = 0;
  // Collective + GEMM pairs of the plan, and how many of them run fused (async TP).
  int pairs = 0, fused_pairs = 0;
  std::map<std::string, int> sharded_dim;  // FQN -> 0 or 1
  std::map<std::string, Shape> local_shape;  // FQN -> this rank's part (sharded parameters)
  // -1 for a replicated parameter.
  int dim_of(const std::string& fqn) const;
  bool active() const { return size > 1; }
  // The full parameter's shape from the local one.
  Shape global_shape(const std::string& fqn, Shape local) const;
  // Initialises `rows`, elements [first, first + rows.numel()) of this rank's part of parameter
  // `fqn`, through `init(part, global_first)`, which fills `part` with the elements of the full
  // parameter starting at flat index global_first: once for a replicated or row-split parameter,
  // once per row for a column-split one (its rows are not contiguous in the full parameter).
  void init_local(const std::string& fqn, Tensor& rows, std::int64_t first,
                  const std::function<void(Tensor& part, std::int64_t global_first)>& init) const;
};

}  // namespace titan::dist
