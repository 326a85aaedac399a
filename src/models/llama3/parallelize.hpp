#pragma once
// How Llama 3 is distributed (TorchTitan's parallelize_llama): the one place that decides the
// tensor-parallel plan, the FSDP units and their reshard policy. The model code knows neither.
#include <string>

#include "dist/fsdp.hpp"
#include "dist/tensor_parallel.hpp"
#include "models/llama3/model.hpp"

namespace titan::llama3 {

// TorchTitan's Llama TP plan over `tp` (T ranks), with sequence parallel:
//   tok_embeddings  row-wise: vocabulary rows [t V/T, (t+1) V/T); its partial output is
//                   reduce-scattered to sequence shards
//   attention_norm, ffn_norm, norm   sequence parallel: run on the rank's sequence shard
//   attention, feed_forward          input all-gathered from sequence shards; wq/wk/wv, w1/w3
//                   column-wise (rows of the weight: heads / hidden units), wo/w2 row-wise
//                   (columns); the partial output reduce-scattered back to sequence shards
//   output          input all-gathered; column-wise (vocabulary rows); with loss_parallel the
//                   logits stay vocabulary-sharded for vocab_parallel_cross_entropy, else they
//                   are all-gathered
// An all-gathered input travels as its consumers' codec encodes it when they all have one
// (Float8Linear tensorwise: e4m3 bytes with the whole tensor's scale), else in its own dtype; the
// output gradient of wo/w2, all-gathered in backward, likewise as their output-gradient codec
// encodes it (Float8Linear tensorwise: e5m2).
// With async_tp (enable_async_tensor_parallel) each all-gather and the column-wise Linears that
// read it run as one dist::all_gather_linears, and each row-wise Linear with the reduce-scatter
// after it as one dist::linear_reduce_scatter (chunked, communication in flight during the GEMMs);
// a pair whose Linears compute their own product (float8) keeps the separate ops. The layout
// counts both kinds of pairs.
// Call on the meta model, before FSDP: the parameters become their local shapes. Throws
// UserError when heads, kv heads, hidden units or the vocabulary do not divide by T.
dist::TpLayout apply_tp(Transformer& model, dist::ProcessGroup& tp, bool loss_parallel, bool async_tp = false);

// Units: tok_embeddings, each TransformerBlock, [norm, output] (the root holds no parameters of
// its own). parallelism.fsdp_reshard_after_forward:
//   default  every unit but [norm, output] frees its gathered parameters after forward (the last
//            unit's backward starts right after its forward, so freeing it would only re-gather)
//   always   every unit frees them;  never  none does (memory for fewer all-gathers)
//   N        as default, but each unit keeps a copy sharded over N adjacent ranks for its
//            backward all-gather (ZeRO++ hpZ; the trainer gives FSDP the N-rank group)
// Every unit frees them after its backward.
void apply_fsdp(Transformer& model, dist::Fsdp& fsdp, const std::string& reshard_after_forward);

}  // namespace titan::llama3
