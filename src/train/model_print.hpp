#pragma once
// model.print_after_conversion: the module tree as TorchTitan prints it after the model
// converters ran (`print(model)`, PyTorch's nested repr; Float8Linear with torchao's
// cast_configs), each leaf followed by its parameters' FQNs and shapes.
#include <string>

namespace titan::nn {
class Module;
}

namespace titan::train {

// E.g.
//   Transformer(
//     (tok_embeddings): Embedding(2048, 256)  # tok_embeddings.weight [2048, 256]
//     (layers): ModuleList(
//       (0): TransformerBlock(
//         (attention): Attention(
//           (wq): Float8Linear(in_features=256, out_features=256, bias=False, cast_configs=i:dyn_ten_e4m3,w:dyn_ten_e4m3,go:dyn_ten_e5m2)  # layers.0.attention.wq.weight [256, 256]
//   ...
//   )
//   12 modules (7 Float8Linear, 2 Linear, ...), 6,163,712 parameters
std::string describe_model(nn::Module& root);

}  // namespace titan::train
