#pragma once
// How Llama 3 is distributed (TorchTitan's parallelize_llama, data parallelism only): the one
// place that decides the FSDP units and their reshard policy.
#include <string>

#include "dist/fsdp.hpp"
#include "models/llama3/model.hpp"

namespace titan::llama3 {

// Units: tok_embeddings, each TransformerBlock, [norm, output] (the root holds no parameters of
// its own). parallelism.fsdp_reshard_after_forward:
//   default  every unit but [norm, output] frees its gathered parameters after forward (the last
//            unit's backward starts right after its forward, so freeing it would only re-gather)
//   always   every unit frees them;  never  none does (memory for fewer all-gathers)
// Every unit frees them after its backward.
void apply_fsdp(Transformer& model, dist::Fsdp& fsdp, const std::string& reshard_after_forward);

}  // namespace titan::llama3
