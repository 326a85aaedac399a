#include <catch2/catch.hpp>

#include "models/llama3/args.hpp"

using namespace titan::llama3;

TEST_CASE("flavors: parameter counts match the published Llama 3 sizes") {
  // 8B, 70B and 405B as TorchTitan counts them (untied output); debugmodel as TorchTitan logs it.
  CHECK(count_parameters(*find_flavor("llama3", "8B")).total == 8'030'261'248LL);
  CHECK(count_parameters(*find_flavor("llama3", "70B")).total == 70'553'706'496LL);
  CHECK(count_parameters(*find_flavor("llama3", "405B")).total == 405'853'388'800LL);
  CHECK(count_parameters(*find_flavor("llama3", "debugmodel")).total == 6'163'712LL);
  // Llama 3.2 1B/3B have tied embeddings (1,235,814,400 and 3,212,749,824); untied adds vocab x dim.
  CHECK(count_parameters(*find_flavor("llama3", "1B")).total == 1'235'814'400LL + 128256LL * 2048);
  CHECK(count_parameters(*find_flavor("llama3", "3B")).total == 3'212'749'824LL + 128256LL * 3072);
  CHECK(find_flavor("llama3", "9B") == nullptr);
}

TEST_CASE("flavors: SwiGLU hidden sizes and head shapes") {
  CHECK(find_flavor("llama3", "debugmodel")->ffn_hidden() == 768);
  CHECK(find_flavor("llama3", "8B")->ffn_hidden() == 14336);
  CHECK(find_flavor("llama3", "70B")->ffn_hidden() == 28672);
  CHECK(find_flavor("llama3", "405B")->ffn_hidden() == 53248);
  CHECK(find_flavor("llama3", "1B")->ffn_hidden() == 8192);
  CHECK(find_flavor("llama3", "3B")->ffn_hidden() == 8192);
  CHECK(find_flavor("llama3", "8B")->head_dim() == 128);
  CHECK(find_flavor("llama3", "8B")->kv_heads() == 8);
  CHECK(find_flavor("llama3", "debugmodel")->kv_heads() == 16);
}

TEST_CASE("FLOPs per token follow 6N + 12 L H D S") {
  const ModelArgs& a = *find_flavor("llama3", "8B");
  const ParamCount c = count_parameters(a);
  const double expected = 6.0 * double(c.total - c.embedding) + 12.0 * 32 * 32 * 128 * 8192;
  CHECK(flops_per_token(a, 8192) == Approx(expected));
}

TEST_CASE("flavors: Llama 2 parameter counts and shapes match Meta's published checkpoints") {
  // Llama-2-7b/13b/70b as their HF safetensors count them (untied lm_head, vocab 32000).
  CHECK(count_parameters(*find_flavor("llama2", "7B")).total == 6'738'415'616LL);
  CHECK(count_parameters(*find_flavor("llama2", "13B")).total == 13'015'864'320LL);
  CHECK(count_parameters(*find_flavor("llama2", "70B")).total == 68'976'648'192LL);
  CHECK(find_flavor("llama2", "7B")->ffn_hidden() == 11008);
  CHECK(find_flavor("llama2", "13B")->ffn_hidden() == 13824);
  CHECK(find_flavor("llama2", "70B")->ffn_hidden() == 28672);
  CHECK(find_flavor("llama2", "70B")->kv_heads() == 8);
  CHECK(find_flavor("llama2", "7B")->kv_heads() == 32);
  for (const auto& f : flavors("llama2")) {
    CHECK(f.args.rope_theta == 10000.0);
    CHECK_FALSE(f.args.rope_scaling.has_value());
  }
  CHECK(find_flavor("llama2", "8B") == nullptr);  // a llama3 flavor
  CHECK(flavors("llama4").empty());
}
