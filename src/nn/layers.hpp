#pragma once
// The basic layers: Linear (no bias, PyTorch weight layout [out, in]), Embedding, RMSNorm.
// Parameters are f32, allocated zero (norms: one); initialisation is the model's job. Under FSDP a
// parameter's data is the unit's gathered value (mixed-precision param dtype): a layer uses it as
// it is, and what it saves for backward is a reference to it, never a copy.
#include "autograd/functions.hpp"
#include "nn/module.hpp"

namespace titan::nn {

class Linear;

// How a tensor a Linear reads may travel in a tensor-parallel all-gather (the activation
// counterpart of FSDP's all-gather extension): its input in forward, or its output gradient in
// backward. Encoded on each rank (e.g. cast to float8 with a scale that is MAX-reduced over the
// group), gathered as the encoding's bytes, then handed to the Linear(s) that read it already
// encoded. The TP plan moves the bytes without knowing what they encode; the layer that supplies
// the codec reads them.
class GatherCodec {
 public:
  virtual ~GatherCodec() = default;
  // What travels (and whether two consumers' codecs encode alike: the same kind and dtype).
  virtual DType wire_dtype() const = 0;
  virtual std::string kind() const = 0;
  // This rank's part `local` [.., C] -> the same shape in wire_dtype(); `max_over_group` replaces a
  // float32 tensor by its element-wise MAX over the gather's group (every rank calls encode together).
  virtual Tensor encode(const Tensor& local, const std::function<void(const Tensor&)>& max_over_group) = 0;
  // The gathered encoding -> the value the tensor carries (its dtype `dtype`).
  virtual Tensor decode(const Tensor& gathered, DType dtype) = 0;
  // Tells `reader` that its next input (an input codec) or output gradient (an output-gradient
  // codec), whose data is `value`, arrived encoded as `gathered`.
  virtual void arrived(Linear& reader, const Tensor& value, const Tensor& gathered) = 0;
};

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features)
      : weight(register_parameter("weight", {out_features, in_features})) {}
  std::string type_name() const override { return "Linear"; }
  // Null: the input travels in its own dtype (a plain Linear computes with it as it is).
  virtual std::shared_ptr<GatherCodec> input_gather_codec() { return nullptr; }
  // The same for the gradient of this Linear's output when a TP all-gather brings it (the
  // backward of a reduce-scatter after a row-wise Linear). Null: in its own dtype.
  virtual std::shared_ptr<GatherCodec> output_grad_gather_codec() { return nullptr; }
  // How forward computes x W^T when something else should compute it (tensor parallel's async
  // plan fuses the product with its collective); null: autograd::linear. A subclass whose forward
  // computes otherwise (Float8Linear) ignores it and says so through honours_product().
  using Product = std::function<Variable(const Variable& x, const Variable& w)>;
  void set_product(Product product) { product_ = std::move(product); }
  virtual bool honours_product() const { return true; }
  std::int64_t in_features() const { return weight.shape()[1]; }
  std::int64_t out_features() const { return weight.shape()[0]; }
  Variable& weight;

 protected:
  std::vector<Variable> forward(const std::vector<Variable>& in) override {
    return {product_ ? product_(in[0], weight) : autograd::linear(in[0], weight)};
  }

 private:
  Product product_;
};

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t dim)
      : weight(register_parameter("weight", {num_embeddings, dim})) {}
  std::string type_name() const override { return "Embedding"; }
  // Tokens are data, not a differentiable input.
  Variable lookup(const Tensor& tokens) {
    tokens_ = tokens;
    Variable out = call({})[0];
    tokens_ = Tensor();  // the backward keeps its own reference; see Transformer::forward_tokens
    return out;
  }
  // This module holds rows [first_row, first_row + rows) of a larger table (a vocabulary shard):
  // tokens outside them give zero rows, to be summed with the other shards' lookups.
  void hold_rows_from(std::int64_t first_row) {
    first_row_ = first_row;
    row_shard_ = true;
  }
  Variable& weight;

 protected:
  std::vector<Variable> forward(const std::vector<Variable>&) override {
    return {row_shard_ ? autograd::embedding_rows(weight, tokens_, first_row_) : autograd::embedding(weight, tokens_)};
  }

 private:
  Tensor tokens_;
  std::int64_t first_row_ = 0;
  bool row_shard_ = false;
};

class RMSNorm : public Module {
 public:
  RMSNorm(std::int64_t dim, double eps) : weight(register_parameter("weight", {dim}, 1.0)), eps_(eps) {}
  std::string type_name() const override { return "RMSNorm"; }
  Variable& weight;

 protected:
  // {x} -> {rmsnorm(x)}; {x, r} -> {h, rmsnorm(h)} with h = x + r, the residual add fused in.
  std::vector<Variable> forward(const std::vector<Variable>& in) override {
    if (in.size() == 2) return autograd::add_rmsnorm(in[0], in[1], weight, eps_);
    return {autograd::rmsnorm(in[0], weight, eps_)};
  }

 private:
  double eps_;
};

}  // namespace titan::nn
