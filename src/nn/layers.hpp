#pragma once
// The basic layers: Linear (no bias, PyTorch weight layout [out, in]), Embedding, RMSNorm.
// Parameters are f32, allocated zero (norms: one); initialisation is the model's job. Under FSDP a
// parameter's data is the unit's gathered value (mixed-precision param dtype): a layer uses it as
// it is, and what it saves for backward is a reference to it, never a copy.
#include "autograd/functions.hpp"
#include "nn/module.hpp"

namespace titan::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features)
      : weight(register_parameter("weight", {out_features, in_features})) {}
  std::string type_name() const override { return "Linear"; }
  std::int64_t in_features() const { return weight.shape()[1]; }
  std::int64_t out_features() const { return weight.shape()[0]; }
  Variable& weight;

 protected:
  std::vector<Variable> forward(const std::vector<Variable>& in) override { return {autograd::linear(in[0], weight)}; }
};

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t dim)
      : weight(register_parameter("weight", {num_embeddings, dim})) {}
  std::string type_name() const override { return "Embedding"; }
  // Tokens are data, not a differentiable input.
  Variable lookup(const Tensor& tokens) {
    tokens_ = tokens;
    return call({})[0];
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
  std::vector<Variable> forward(const std::vector<Variable>& in) override {
    return {autograd::rmsnorm(in[0], weight, eps_)};
  }

 private:
  double eps_;
};

}  // namespace titan::nn
