// GPU kernels vs the CPU reference (src/ops/cpu, ops::swiglu): RMSNorm, RoPE, SwiGLU, embedding,
// fused cross-entropy. Odd shapes (so vector paths meet tails and misaligned rows), f32 inputs
// (rel 1e-5) and bf16 inputs (outputs rel 1e-2; the CPU computes in f32 on the same
// bf16-rounded inputs; f32 outputs such as rstd, lse, loss, dweight stay at 1e-5), poisoned
// outputs, aligned and misaligned pointers, in-place where the API allows it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/tensor.hpp"
#include "cross_entropy.hpp"
#include "embedding.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/cpu/embedding.hpp"
#include "ops/cpu/loss.hpp"
#include "ops/cpu/norm.hpp"
#include "ops/cpu/rope.hpp"
#include "ops/ops.hpp"
#include "rmsnorm.hpp"
#include "rope.hpp"
#include "runtime.hpp"
#include "swiglu.hpp"

namespace {

using namespace titan;
using gpu_test::DeviceBuffer;
using gpu_test::random_vector;
using gpu_test::require_close;
using gpu_test::rounded;
using gpu_test::tolerance_for;

constexpr DType kFloatTypes[] = {DType::f32, DType::bf16};

// A device copy of `values` that starts one element past a 16-byte aligned allocation, so every
// vectorized path must fall back (or handle the head) for it.
class OffsetBuffer {
 public:
  OffsetBuffer(const std::vector<float>& values, DType dtype) : dtype_(dtype) {
    std::vector<float> padded(1, 0.0f);
    padded.insert(padded.end(), values.begin(), values.end());
    buf_ = std::make_unique<DeviceBuffer>(padded, dtype);
  }
  OffsetBuffer(std::int64_t n, DType dtype) : dtype_(dtype), buf_(std::make_unique<DeviceBuffer>(n + 1, dtype)) {}
  void* get() const { return static_cast<char*>(buf_->get()) + dtype_size(dtype_); }
  std::vector<float> download() const {
    std::vector<float> all = buf_->download();
    all.erase(all.begin());
    return all;
  }

 private:
  DType dtype_;
  std::unique_ptr<DeviceBuffer> buf_;
};

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// RMSNorm

TEST_CASE("cuda rmsnorm forward and backward match the CPU reference", "[gpu]") {
  struct Case {
    std::int64_t rows, D;
  };
  // 257: scalar path; 256/64: vector path; 600 rows: several rows per backward block;
  // 12296: accumulator in global scratch instead of shared memory.
  const Case cases[] = {{37, 257}, {37, 256}, {600, 64}, {5, 12296}};
  for (const Case& cs : cases)
    for (DType dt : kFloatTypes) {
      const std::int64_t rows = cs.rows, D = cs.D, n = rows * D;
      INFO("rows " << rows << " D " << D << " dtype " << dtype_name(dt));
      const std::vector<float> x = rounded(random_vector(n, 11, 1.5f), dt);
      std::vector<float> w = random_vector(D, 12, 0.3f);
      for (auto& v : w) v += 1.0f;
      w = rounded(w, dt);
      const std::vector<float> dy = rounded(random_vector(n, 13), dt);
      const std::vector<float> dw0 = random_vector(D, 14);  // dw is accumulated into

      std::vector<float> y_ref(n), rstd_ref(rows), dx_ref(n), dw_ref = dw0;
      ops::cpu::rmsnorm_forward<float>(x.data(), w.data(), y_ref.data(), rstd_ref.data(), rows, D, 1e-5);
      ops::cpu::rmsnorm_backward<float>(dy.data(), x.data(), w.data(), rstd_ref.data(), dx_ref.data(), dw_ref.data(),
                                        rows, D);

      DeviceBuffer gx(x, dt), gw(w, dt), gdy(dy, dt), gdw(dw0, DType::f32);
      DeviceBuffer gy(n, dt), grstd(rows, DType::f32), gdx(n, dt);
      cuda::rmsnorm_forward(gx.get(), gw.get(), gy.get(), grstd.as<float>(), rows, D, 1e-5, dt);
      require_close(gy.download(), y_ref, tolerance_for(dt), "rmsnorm y");
      require_close(grstd.download(), rstd_ref, 1e-5, "rmsnorm rstd");

      cuda::rmsnorm_backward(gdy.get(), gx.get(), gw.get(), grstd.as<float>(), gdx.get(), gdw.as<float>(), rows, D, dt);
      require_close(gdx.download(), dx_ref, tolerance_for(dt), "rmsnorm dx");
      require_close(gdw.download(), dw_ref, 1e-5, "rmsnorm dw (accumulated)");

      // Deterministic: a second backward from the same dw start is bitwise identical.
      const std::vector<float> dw_first = gdw.download();
      DeviceBuffer gdw2(dw0, DType::f32);
      cuda::rmsnorm_backward(gdy.get(), gx.get(), gw.get(), grstd.as<float>(), gdx.get(), gdw2.as<float>(), rows, D, dt);
      const std::vector<float> dw_second = gdw2.download();
      REQUIRE(std::memcmp(dw_first.data(), dw_second.data(), dw_first.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("cuda rmsnorm on misaligned pointers uses the scalar path correctly", "[gpu]") {
  const std::int64_t rows = 9, D = 64, n = rows * D;
  for (DType dt : kFloatTypes) {
    INFO("dtype " << dtype_name(dt));
    const std::vector<float> x = rounded(random_vector(n, 21), dt), w = rounded(random_vector(D, 22), dt);
    const std::vector<float> dy = rounded(random_vector(n, 23), dt);
    std::vector<float> y_ref(n), rstd_ref(rows), dx_ref(n), dw_ref(D, 0.0f);
    ops::cpu::rmsnorm_forward<float>(x.data(), w.data(), y_ref.data(), rstd_ref.data(), rows, D, 1e-6);
    ops::cpu::rmsnorm_backward<float>(dy.data(), x.data(), w.data(), rstd_ref.data(), dx_ref.data(), dw_ref.data(), rows,
                                      D);
    OffsetBuffer gx(x, dt), gdy(dy, dt), gy(n, dt), gdx(n, dt);
    DeviceBuffer gw(w, dt), grstd(rows, DType::f32), gdw(std::vector<float>(D, 0.0f), DType::f32);
    cuda::rmsnorm_forward(gx.get(), gw.get(), gy.get(), grstd.as<float>(), rows, D, 1e-6, dt);
    cuda::rmsnorm_backward(gdy.get(), gx.get(), gw.get(), grstd.as<float>(), gdx.get(), gdw.as<float>(), rows, D, dt);
    require_close(gy.download(), y_ref, tolerance_for(dt), "rmsnorm y (misaligned)");
    require_close(gdx.download(), dx_ref, tolerance_for(dt), "rmsnorm dx (misaligned)");
    require_close(gdw.download(), dw_ref, 1e-5, "rmsnorm dw (misaligned)");
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE

TEST_CASE("cuda rope matches the CPU reference forward and inverse", "[gpu]") {
  const std::int64_t B = 2, S = 37, H = 3, D = 66, half = D / 2, S_table = 41, n = B * S * H * D;
  std::vector<float> cos_t(S_table * half), sin_t(S_table * half);
  for (std::int64_t s = 0; s < S_table; ++s)
    for (std::int64_t i = 0; i < half; ++i) {
      const double angle = double(s) * std::pow(10000.0, -2.0 * double(i) / double(D));
      cos_t[s * half + i] = float(std::cos(angle));
      sin_t[s * half + i] = float(std::sin(angle));
    }
  DeviceBuffer gcos(cos_t, DType::f32), gsin(sin_t, DType::f32);
  for (DType dt : kFloatTypes)
    for (int sign : {1, -1}) {
      INFO("dtype " << dtype_name(dt) << " sign " << sign);
      const std::vector<float> x = rounded(random_vector(n, 31, 2.0f), dt);
      std::vector<float> y_ref(n);
      ops::cpu::rope_apply<float>(x.data(), y_ref.data(), cos_t.data(), sin_t.data(), B, S, H, D, sign);

      DeviceBuffer gx(x, dt), gy(n, dt);
      cuda::rope_apply(gx.get(), gy.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, D, sign, dt);
      require_close(gy.download(), y_ref, tolerance_for(dt), "rope y");

      OffsetBuffer ox(x, dt), oy(n, dt);  // unpaired (scalar) path
      cuda::rope_apply(ox.get(), oy.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, D, sign, dt);
      require_close(oy.download(), y_ref, tolerance_for(dt), "rope y (misaligned)");

      DeviceBuffer gin(x, dt);  // in place
      cuda::rope_apply(gin.get(), gin.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, D, sign, dt);
      require_close(gin.download(), y_ref, tolerance_for(dt), "rope y (in place)");
    }
  SECTION("the inverse rotation undoes the forward one") {
    const std::vector<float> x = random_vector(n, 32);
    DeviceBuffer gx(x, DType::f32), gy(n, DType::f32), gz(n, DType::f32);
    cuda::rope_apply(gx.get(), gy.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, D, 1, DType::f32);
    cuda::rope_apply(gy.get(), gz.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, D, -1, DType::f32);
    require_close(gz.download(), x, 1e-5, "rope round trip");
  }
  SECTION("odd head dim is rejected") {
    DeviceBuffer gx(B * S * H * 3, DType::f32);
    REQUIRE_THROWS_AS(cuda::rope_apply(gx.get(), gx.get(), gcos.as<float>(), gsin.as<float>(), B, S, H, 3, 1, DType::f32),
                      std::invalid_argument);
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

TEST_CASE("cuda swiglu forward and backward match ops::swiglu on the CPU", "[gpu]") {
  const std::int64_t n = 4099;
  for (DType dt : kFloatTypes)
    for (bool misaligned : {false, true}) {
      INFO("dtype " << dtype_name(dt) << (misaligned ? " misaligned" : " aligned"));
      std::vector<float> a = random_vector(n, 41, 3.0f);
      a[5] = -100.0f;  // exp overflow / underflow in the sigmoid
      a[6] = 100.0f;
      a[7] = -30.0f;
      a = rounded(a, dt);
      const std::vector<float> b = rounded(random_vector(n, 42), dt), dh = rounded(random_vector(n, 43), dt);

      const Tensor ta = Tensor::from_vector(as_double(a), {n}), tb = Tensor::from_vector(as_double(b), {n});
      const Tensor tdh = Tensor::from_vector(as_double(dh), {n});
      const Tensor th = ops::swiglu(ta, tb);
      Tensor tda, tdb;
      ops::swiglu_backward(tdh, ta, tb, tda, tdb);

      std::vector<float> h, da, db;
      if (misaligned) {
        OffsetBuffer ga(a, dt), gb(b, dt), gdh(dh, dt), gh(n, dt), gda(n, dt), gdb(n, dt);
        cuda::swiglu_forward(ga.get(), gb.get(), gh.get(), n, dt);
        cuda::swiglu_backward(gdh.get(), ga.get(), gb.get(), gda.get(), gdb.get(), n, dt);
        h = gh.download();
        da = gda.download();
        db = gdb.download();
      } else {
        DeviceBuffer ga(a, dt), gb(b, dt), gdh(dh, dt), gh(n, dt), gda(n, dt), gdb(n, dt);
        cuda::swiglu_forward(ga.get(), gb.get(), gh.get(), n, dt);
        cuda::swiglu_backward(gdh.get(), ga.get(), gb.get(), gda.get(), gdb.get(), n, dt);
        h = gh.download();
        da = gda.download();
        db = gdb.download();
      }
      require_close(h, th.to_vector(), tolerance_for(dt), "swiglu h");
      require_close(da, tda.to_vector(), tolerance_for(dt), "swiglu da");
      require_close(db, tdb.to_vector(), tolerance_for(dt), "swiglu db");
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding

namespace {
// The embedding kernels' out-of-range flag, taken (cleared) and read back.
bool take_out_of_range_flag() {
  double* d = static_cast<double*>(cuda::allocate(sizeof(double)));
  cuda::embedding_take_out_of_range_async(d);
  double h = -1;
  cuda::copy(&h, d, sizeof h);
  cuda::deallocate(d, sizeof(double));
  return h != 0;
}
}  // namespace

TEST_CASE("cuda embedding forward and backward match the CPU reference", "[gpu]") {
  const std::int64_t V = 1031, n_tokens = 301;
  std::mt19937 gen(51);
  std::vector<std::int64_t> tokens(n_tokens);
  for (std::int64_t i = 0; i < n_tokens; ++i)  // many repeats (small ids) mixed with spread ids
    tokens[i] = i % 3 == 0 ? std::int64_t(gen() % 8) : std::int64_t(gen() % V);
  tokens[0] = 0;
  tokens[1] = V - 1;
  for (std::int64_t i = 200; i < 260; ++i) tokens[i] = 5;  // one heavy token
  std::vector<double> tokens_d(tokens.begin(), tokens.end());
  take_out_of_range_flag();  // clears any stale flag

  for (std::int64_t D : {257, 256})
    for (DType dt : kFloatTypes)
      for (DType tok_dt : {DType::i32, DType::i64}) {
        INFO("D " << D << " dtype " << dtype_name(dt) << " tokens " << dtype_name(tok_dt));
        const Tensor ttok = Tensor::from_vector(tokens_d, {n_tokens}, tok_dt);
        const std::vector<float> weight = rounded(random_vector(V * D, 52), dt);
        const std::vector<float> dy = rounded(random_vector(n_tokens * D, 53), dt);
        const std::vector<float> dw0 = random_vector(V * D, 54);

        std::vector<float> out_ref(n_tokens * D), dw_ref = dw0;
        ops::cpu::embedding_forward<float>(weight.data(), ttok, out_ref.data(), V, D);
        ops::cpu::embedding_backward<float>(dy.data(), ttok, dw_ref.data(), V, D);

        DeviceBuffer gw(weight, dt), gtok(n_tokens, tok_dt), gout(n_tokens * D, dt), gdy(dy, dt);
        DeviceBuffer gdw(dw0, DType::f32);
        gtok.upload_ints(tokens);
        cuda::embedding_forward(gw.get(), gtok.get(), tok_dt, gout.get(), n_tokens, V, D, dt);
        require_close(gout.download(), out_ref, 0.0, "embedding out (exact copy)");
        cuda::embedding_backward(gdy.get(), gtok.get(), tok_dt, gdw.as<float>(), n_tokens, V, D, dt);
        const std::vector<float> dw_got = gdw.download();
        require_close(dw_got, dw_ref, 1e-6, "embedding dweight");
        REQUIRE_FALSE(take_out_of_range_flag());

        DeviceBuffer gdw2(dw0, DType::f32);  // deterministic
        cuda::embedding_backward(gdy.get(), gtok.get(), tok_dt, gdw2.as<float>(), n_tokens, V, D, dt);
        const std::vector<float> dw_again = gdw2.download();
        REQUIRE(std::memcmp(dw_got.data(), dw_again.data(), dw_got.size() * sizeof(float)) == 0);
      }
}

TEST_CASE("cuda embedding skips out-of-range tokens and raises the flag", "[gpu]") {
  const std::int64_t V = 37, D = 24, n_tokens = 6;
  const std::vector<std::int64_t> tokens = {3, -1, 36, 37, 3, 1000};
  take_out_of_range_flag();  // clear
  for (DType tok_dt : {DType::i32, DType::i64}) {
    INFO("tokens " << dtype_name(tok_dt));
    const std::vector<float> weight = random_vector(V * D, 61), dy = random_vector(n_tokens * D, 62);
    DeviceBuffer gw(weight, DType::f32), gtok(n_tokens, tok_dt), gout(n_tokens * D, DType::f32);
    gtok.upload_ints(tokens);
    cuda::embedding_forward(gw.get(), gtok.get(), tok_dt, gout.get(), n_tokens, V, D, DType::f32);
    REQUIRE(take_out_of_range_flag());
    REQUIRE_FALSE(take_out_of_range_flag());  // the read cleared it
    const std::vector<float> out = gout.download();
    std::vector<float> out_ref(n_tokens * D, 0.0f);  // out-of-range rows are zeros
    for (std::int64_t i = 0; i < n_tokens; ++i)
      if (tokens[i] >= 0 && tokens[i] < V)
        for (std::int64_t d = 0; d < D; ++d) out_ref[i * D + d] = weight[tokens[i] * D + d];
    require_close(out, out_ref, 0.0, "embedding out with skipped tokens");

    DeviceBuffer gdw(std::vector<float>(V * D, 0.0f), DType::f32), gdy(dy, DType::f32);
    cuda::embedding_backward(gdy.get(), gtok.get(), tok_dt, gdw.as<float>(), n_tokens, V, D, DType::f32);
    REQUIRE(take_out_of_range_flag());
    std::vector<float> dw_ref(V * D, 0.0f);
    for (std::int64_t i = 0; i < n_tokens; ++i)
      if (tokens[i] >= 0 && tokens[i] < V)
        for (std::int64_t d = 0; d < D; ++d) dw_ref[tokens[i] * D + d] += dy[i * D + d];
    require_close(gdw.download(), dw_ref, 0.0, "embedding dweight with skipped tokens");
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

namespace {

// Per-row log-sum-exp in double (the reference for lse_rows).
std::vector<double> lse_reference(const std::vector<float>& x, std::int64_t N, std::int64_t V) {
  std::vector<double> out(N);
  for (std::int64_t n = 0; n < N; ++n) {
    double mx = -INFINITY;
    for (std::int64_t j = 0; j < V; ++j) mx = std::max(mx, double(x[n * V + j]));
    double s = 0;
    for (std::int64_t j = 0; j < V; ++j) s += std::exp(double(x[n * V + j]) - mx);
    out[n] = mx + std::log(s);
  }
  return out;
}

}  // namespace

TEST_CASE("cuda cross_entropy forward and backward match the CPU reference", "[gpu]") {
  const std::int64_t ignore = -100;
  struct Case {
    std::int64_t N, V;
  };
  const Case cases[] = {{37, 1031}, {7, 50257}};
  for (const Case& cs : cases)
    for (DType dt : kFloatTypes) {
      const std::int64_t N = cs.N, V = cs.V;
      INFO("N " << N << " V " << V << " dtype " << dtype_name(dt));
      std::vector<float> x = random_vector(N * V, 71, 3.0f);
      for (std::int64_t j = 0; j < V; j += 7) x[2 * V + j] = -INFINITY;  // masked entries are exact zeros
      x = rounded(x, dt);
      std::mt19937 gen(72);
      std::vector<std::int64_t> targets(N);
      for (auto& t : targets) t = std::int64_t(gen() % V);
      targets[1] = ignore;
      targets[N - 1] = ignore;
      targets[3] = V - 1;
      targets[4] = 0;
      std::int64_t n_valid = 0;
      for (auto t : targets) n_valid += t != ignore;

      // Reference: per-row loss from the CPU op on each row alone, lse in double, mean loss.
      std::vector<double> loss_ref(N, 0.0);
      for (std::int64_t n = 0; n < N; ++n) {
        std::int64_t nv = 0;
        loss_ref[n] = ops::cpu::cross_entropy_forward<float>(x.data() + n * V, &targets[n], 1, V, ignore, &nv);
      }
      std::vector<double> lse_ref = lse_reference(x, N, V);
      for (std::int64_t n = 0; n < N; ++n)
        if (targets[n] == ignore) lse_ref[n] = 0.0;
      std::int64_t nv_all = 0;
      const double mean_ref = ops::cpu::cross_entropy_forward<float>(x.data(), targets.data(), N, V, ignore, &nv_all);
      REQUIRE(nv_all == n_valid);
      std::vector<float> dx_ref(N * V);
      ops::cpu::cross_entropy_backward<float>(x.data(), targets.data(), dx_ref.data(), N, V, ignore, n_valid, 1.0);

      DeviceBuffer gx(x, dt), gt(N, DType::i64), gloss(N, DType::f32), glse(N, DType::f32), gdx(N * V, dt);
      gt.upload_ints(targets);
      cuda::cross_entropy_forward(gx.get(), gt.as<std::int64_t>(), N, V, ignore, gloss.as<float>(), glse.as<float>(), dt);
      const std::vector<float> loss = gloss.download();
      require_close(loss, loss_ref, 1e-5, "cross_entropy loss_rows");
      require_close(glse.download(), lse_ref, 1e-5, "cross_entropy lse_rows");
      // The mean on the device: the valid rows counted there, the loss within f32 of the CPU's.
      DeviceBuffer gmean(1, DType::f32), gvalid(1, DType::f64);
      cuda::cross_entropy_mean(gloss.as<float>(), gt.as<std::int64_t>(), N, ignore, gmean.as<float>(), gvalid.as<double>());
      double valid = 0;
      cuda::copy(&valid, gvalid.get(), sizeof valid);
      REQUIRE(valid == double(n_valid));
      const double mean = gmean.download()[0];
      REQUIRE(std::fabs(mean - mean_ref) <= 1e-5 * std::fabs(mean_ref));

      // dloss 1 over the device's count: g = 1 / n_valid, as the CPU's.
      const double dloss = 1.0;
      const double* gv = gvalid.as<double>();
      cuda::cross_entropy_backward(gx.get(), gt.as<std::int64_t>(), glse.as<float>(), dloss, gv, gdx.get(), N, V, ignore, dt);
      const std::vector<float> dx = gdx.download();
      require_close(dx, dx_ref, tolerance_for(dt), "cross_entropy dlogits");
      for (std::int64_t j = 0; j < V; ++j) {  // ignored rows are exact zeros (not left poisoned)
        REQUIRE(dx[1 * V + j] == 0.0f);
        REQUIRE(dx[(N - 1) * V + j] == 0.0f);
      }

      // dlogits at a different 16-byte phase than logits (scalar path), and in place.
      OffsetBuffer odx(N * V, dt);
      cuda::cross_entropy_backward(gx.get(), gt.as<std::int64_t>(), glse.as<float>(), dloss, gv, odx.get(), N, V, ignore, dt);
      require_close(odx.download(), dx_ref, tolerance_for(dt), "cross_entropy dlogits (misaligned)");
      DeviceBuffer gin(x, dt);
      cuda::cross_entropy_backward(gin.get(), gt.as<std::int64_t>(), glse.as<float>(), dloss, gv, gin.get(), N, V, ignore, dt);
      require_close(gin.download(), dx_ref, tolerance_for(dt), "cross_entropy dlogits (in place)");

      // Logits at an odd element offset: every row's head/body/tail split differs.
      OffsetBuffer ox(x, dt);
      DeviceBuffer gloss2(N, DType::f32), glse2(N, DType::f32);
      cuda::cross_entropy_forward(ox.get(), gt.as<std::int64_t>(), N, V, ignore, gloss2.as<float>(), glse2.as<float>(),
                                  dt);
      require_close(gloss2.download(), loss_ref, 1e-5, "cross_entropy loss_rows (misaligned logits)");
    }
}

TEST_CASE("cuda cross_entropy: NaN logits and bad targets poison only their row", "[gpu]") {
  const std::int64_t N = 6, V = 1031, ignore = -100;
  std::vector<float> x = random_vector(N * V, 81, 2.0f);
  x[2 * V + 17] = std::numeric_limits<float>::quiet_NaN();  // row 2: NaN logit
  x[4 * V + 3] = std::numeric_limits<float>::quiet_NaN();   // row 4: NaN but ignored
  x[0 * V + 0] = std::numeric_limits<float>::quiet_NaN();   // row 0: NaN in the first element
  const std::vector<std::int64_t> targets = {5, 9, 11, V + 3, ignore, 1030};  // row 3: out of range
  DeviceBuffer gx(x, DType::f32), gt(N, DType::i64), gloss(N, DType::f32), glse(N, DType::f32);
  DeviceBuffer gdx(N * V, DType::f32);
  gt.upload_ints(targets);
  DeviceBuffer flag(1, DType::f64);
  const double zero = 0;
  cuda::cross_entropy_take_out_of_range_async(flag.as<double>());  // clears a stale flag
  cuda::copy(flag.get(), &zero, sizeof zero);
  cuda::cross_entropy_forward(gx.get(), gt.as<std::int64_t>(), N, V, ignore, gloss.as<float>(), glse.as<float>(),
                              DType::f32);
  cuda::cross_entropy_take_out_of_range_async(flag.as<double>());  // row 3's target raised it
  double raised = 0;
  cuda::copy(&raised, flag.get(), sizeof raised);
  CHECK(raised == 2.0);
  const std::vector<float> loss = gloss.download();
  CHECK(std::isnan(loss[0]));
  CHECK(std::isnan(loss[2]));
  CHECK(std::isnan(loss[3]));
  CHECK(loss[4] == 0.0f);
  for (std::int64_t n : {1, 5}) {
    std::int64_t nv = 0;
    const double want = ops::cpu::cross_entropy_forward<float>(x.data() + n * V, &targets[n], 1, V, ignore, &nv);
    CHECK(std::fabs(loss[n] - want) <= 1e-5 * std::fabs(want));
  }
  // 5 valid rows and dloss 1.25: g = 0.25 exactly.
  DeviceBuffer gmean(1, DType::f32), gvalid(1, DType::f64);
  cuda::cross_entropy_mean(gloss.as<float>(), gt.as<std::int64_t>(), N, ignore, gmean.as<float>(), gvalid.as<double>());
  CHECK(std::isnan(gmean.download()[0]));  // a NaN row makes the mean NaN
  cuda::cross_entropy_backward(gx.get(), gt.as<std::int64_t>(), glse.as<float>(), 1.25, gvalid.as<double>(), gdx.get(), N,
                               V, ignore, DType::f32);
  const std::vector<float> dx = gdx.download();
  for (std::int64_t j = 0; j < V; ++j) {
    REQUIRE(std::isnan(dx[2 * V + j]));
    REQUIRE(std::isnan(dx[3 * V + j]));
    REQUIRE(dx[4 * V + j] == 0.0f);
    REQUIRE(std::isfinite(dx[1 * V + j]));
    REQUIRE(std::isfinite(dx[5 * V + j]));
  }
}
