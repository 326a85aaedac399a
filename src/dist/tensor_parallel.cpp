#include "dist/tensor_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "autograd/functions.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

namespace {

using TV = std::vector<Tensor>;

// A sequence-sharded activation as rows: rank t's shard [B, S/T, C] is R = B S/T rows of C, and
// its row r = b S/T + s is row b S + t S/T + s of the whole [B, S, C].
struct SequenceRows {
  std::int64_t Sl;  // S/T
  int T;
  // fn(t, local_first, full_first, count) over the contiguous runs of rows [r0, r0 + n) of every rank.
  template <class F>
  void runs(std::int64_t r0, std::int64_t n, F&& fn) const {
    for (int t = 0; t < T; ++t)
      for (std::int64_t r = r0; r < r0 + n;) {
        const std::int64_t end = std::min(r0 + n, (r / Sl + 1) * Sl);
        fn(t, r, (r / Sl) * Sl * T + t * Sl + r % Sl, end - r);
        r = end;
      }
  }
  // Rows [r0, r0 + n) of every rank, rank-major [T n, C], from the whole `full` [B S, C] (in
  // `dtype`, converted as they are copied; default full's); and back.
  Tensor take(const Tensor& full, std::int64_t r0, std::int64_t n, std::optional<DType> dtype = std::nullopt) const {
    const std::int64_t C = full.shape().back();
    Tensor out = Tensor::empty({T * n, C}, dtype.value_or(full.dtype()), full.device());
    runs(r0, n, [&](int t, std::int64_t r, std::int64_t f, std::int64_t k) {
      out.view_range((t * n + r - r0) * C, {k * C}).copy_from(full.view_range(f * C, {k * C}));
    });
    return out;
  }
  void put(const Tensor& rank_major, std::int64_t r0, std::int64_t n, const Tensor& full) const {
    const std::int64_t C = full.shape().back();
    runs(r0, n, [&](int t, std::int64_t r, std::int64_t f, std::int64_t k) {
      full.view_range(f * C, {k * C}).copy_from(rank_major.view_range((t * n + r - r0) * C, {k * C}));
    });
  }
};

Shape with_dim(Shape s, size_t d, std::int64_t v) {
  s[d] = v;
  return s;
}

Tensor rows_view(const Tensor& t) { return t.view({t.numel() / t.shape().back(), t.shape().back()}); }

void require_sequence_divisible(std::int64_t S, int T) {
  if (S % T != 0)
    throw std::invalid_argument("tensor parallel: sequence length " + std::to_string(S) +
                                " is not a multiple of the TP degree " + std::to_string(T));
}

// Sequence shard [B, S/T, ...] -> [B, S, ...] in the shard's dtype.
Tensor gather_sequence(const Tensor& x, ProcessGroup& g) {
  const int T = g.size();
  const std::int64_t R = x.numel() / x.shape().back();
  Tensor buf = Tensor::empty({T * R, x.shape().back()}, x.dtype(), x.device());
  g.all_gather(x.view({x.numel()}), buf.view({buf.numel()}));
  Tensor out = Tensor::empty(with_dim(x.shape(), 1, x.size(1) * T), x.dtype(), x.device());
  SequenceRows{x.size(1), T}.put(buf, 0, R, rows_view(out));
  return out;
}

// The same through `codec`: the shard encoded (its amaxes MAX-reduced over the group), the
// encoding gathered, and `readers` told what arrived; returns the decoded value in x's dtype.
Tensor gather_sequence_encoded(const Tensor& x, nn::GatherCodec& codec, ProcessGroup& g,
                               const std::vector<nn::Linear*>& readers) {
  const Tensor encoded = codec.encode(x, [&g](const Tensor& t) { g.all_reduce(t, ReduceOp::max); });
  const Tensor gathered = gather_sequence(encoded, g);
  const Tensor value = codec.decode(gathered, x.dtype());
  for (nn::Linear* r : readers) codec.arrived(*r, value, gathered);
  return value;
}

// Partial [B, S, ...] -> the sum's sequence shard [B, S/T, ...], summed in float32.
Tensor reduce_scatter_sum(const Tensor& x, ProcessGroup& g) {
  const int T = g.size();
  require_sequence_divisible(x.size(1), T);
  const std::int64_t R = x.numel() / x.shape().back() / T;
  const Tensor in = SequenceRows{x.size(1) / T, T}.take(rows_view(x), 0, R, DType::f32);
  Tensor out = Tensor::empty(with_dim(x.shape(), 1, x.size(1) / T), DType::f32, x.device());
  g.reduce_scatter(in.view({in.numel()}), out.view({out.numel()}), ReduceOp::sum);
  return x.dtype() == DType::f32 ? out : out.to(x.dtype());
}

// [first row, rows) of each chunk of a shard of R rows.
std::vector<std::pair<std::int64_t, std::int64_t>> row_chunks(std::int64_t R, int T) {
  const std::int64_t K = std::max<std::int64_t>(1, std::min<std::int64_t>(R, async_tp_chunks(T)));
  std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
  for (std::int64_t j = 0; j < K; ++j) chunks.emplace_back(j * R / K, (j + 1) * R / K - j * R / K);
  return chunks;
}

// Chunk by chunk: all-gathers rows of the shard `local` [R, C] (all issued at once), and as chunk
// j arrives, fn(j, rank-major rows [T n_j, C]) while the later ones are in flight.
template <class F>
void gather_chunks(const Tensor& local, ProcessGroup& g, const std::vector<std::pair<std::int64_t, std::int64_t>>& chunks,
                   F&& fn) {
  const std::int64_t C = local.shape().back();
  std::vector<Tensor> bufs;
  std::vector<std::unique_ptr<Work>> works;
  for (auto [r0, n] : chunks) {
    bufs.push_back(Tensor::empty({g.size() * n, C}, local.dtype(), local.device()));
    works.push_back(g.all_gather_async(local.view_range(r0 * C, {n * C}), bufs.back().view({bufs.back().numel()})));
  }
  for (size_t j = 0; j < chunks.size(); ++j) {
    works[j]->wait();
    fn(j, bufs[j]);
    poll_collectives();
  }
}

// Chunk by chunk: part(j) gives rank-major rows [T n_j, C] of a partial sum, reduce-scattered (in
// float32) into rows of `out` [R, C] (float32) while the next chunk's part is computed; then
// meanwhile() runs while the last ones are still in flight.
template <class F, class G>
void reduce_scatter_chunks(const Tensor& out, ProcessGroup& g, const std::vector<std::pair<std::int64_t, std::int64_t>>& chunks,
                           F&& part, G&& meanwhile) {
  const std::int64_t C = out.shape().back();
  std::vector<Tensor> parts;
  std::vector<std::unique_ptr<Work>> works;
  for (size_t j = 0; j < chunks.size(); ++j) {
    Tensor p = part(j);
    parts.push_back(p.dtype() == DType::f32 ? p : p.to(DType::f32));
    works.push_back(g.reduce_scatter_async(parts.back().view({parts.back().numel()}),
                                           out.view_range(chunks[j].first * C, {chunks[j].second * C}), ReduceOp::sum));
    poll_collectives();
  }
  meanwhile();
  for (auto& w : works) w->wait();
}

}  // namespace

int async_tp_chunks(int tp_size) { return std::max(2, tp_size); }

GatheredLinears all_gather_linears(const Variable& x, const std::vector<Variable>& weights, ProcessGroup& group) {
  const Tensor xd = x.data();
  const int T = group.size();
  const SequenceRows rows{xd.size(1), T};
  const auto chunks = row_chunks(xd.numel() / xd.shape().back(), T);
  const Tensor gathered = Tensor::empty(with_dim(xd.shape(), 1, xd.size(1) * T), xd.dtype(), xd.device());
  std::vector<Tensor> wd, ys(weights.size());
  for (const Variable& w : weights) wd.push_back(w.data());
  gather_chunks(rows_view(xd), group, chunks, [&](size_t j, const Tensor& chunk) {
    const auto [r0, n] = chunks[j];
    rows.put(chunk, r0, n, rows_view(gathered));
    for (size_t i = 0; i < wd.size(); ++i) {
      Tensor y = ops::linear(chunk, wd[i]);
      if (!ys[i].defined()) {
        Shape shape = gathered.shape();
        shape.back() = wd[i].size(0);
        ys[i] = Tensor::empty(shape, y.dtype(), y.device());
      }
      rows.put(y, r0, n, rows_view(ys[i]));
    }
  });
  std::vector<Variable> inputs{x};
  std::vector<bool> need_w;
  for (const Variable& w : weights) {
    inputs.push_back(w);
    need_w.push_back(w.requires_grad());
  }
  // `gathered` is an output too: a consumer that computes its own product from it (one whose
  // forward runs behind an identity node, say) sends its gradient back through this node.
  std::vector<Tensor> outs{gathered};
  outs.insert(outs.end(), ys.begin(), ys.end());
  auto outputs = autograd::record(
      "AllGatherLinears", inputs, outs, [&group, rows, chunks, gathered, wd, need_w, shape = xd.shape()](const TV& g) -> TV {
        TV grads(1 + wd.size());
        bool any = false;
        for (const Tensor& gi : g) any = any || gi.defined();
        if (!any) return grads;
        Tensor dx = Tensor::empty(shape, DType::f32, gathered.device());
        DType dx_dtype = DType::f32;
        reduce_scatter_chunks(
            rows_view(dx), group, chunks,
            [&](size_t j) {
              // This chunk's rows of the gathered input's gradient: sum_i dy_i W_i (+ the direct one).
              const auto [r0, n] = chunks[j];
              Tensor part = g[0].defined() ? rows.take(rows_view(g[0]), r0, n) : Tensor();
              for (size_t i = 0; i < wd.size(); ++i) {
                if (!g[1 + i].defined()) continue;
                Tensor d = ops::linear_backward_input(rows.take(rows_view(g[1 + i]), r0, n), wd[i]);
                part = part.defined() ? ops::add(part, d) : d;
              }
              dx_dtype = part.dtype();
              return part;
            },
            [&] {  // while the last chunks reduce: the weight gradients
              for (size_t i = 0; i < wd.size(); ++i)
                if (need_w[i] && g[1 + i].defined()) {
                  grads[1 + i] = Tensor::empty(wd[i].shape(), wd[i].dtype(), wd[i].device());
                  ops::linear_backward_weight(g[1 + i], gathered, grads[1 + i], false);
                }
            });
        grads[0] = dx_dtype == DType::f32 ? dx : dx.to(dx_dtype);
        return grads;
      });
  return {outputs[0], std::vector<Variable>(outputs.begin() + 1, outputs.end())};
}

Variable linear_reduce_scatter(const Variable& x, const Variable& w, ProcessGroup& group) {
  const Tensor xd = x.data(), wd = w.data();
  const int T = group.size();
  require_sequence_divisible(xd.size(1), T);
  const SequenceRows rows{xd.size(1) / T, T};
  const auto chunks = row_chunks(xd.numel() / xd.shape().back() / T, T);
  Shape out_shape = with_dim(xd.shape(), 1, xd.size(1) / T);
  out_shape.back() = wd.size(0);
  const Tensor sum = Tensor::empty(out_shape, DType::f32, xd.device());
  DType y_dtype = DType::f32;
  reduce_scatter_chunks(rows_view(sum), group, chunks, [&](size_t j) {
    Tensor part = ops::linear(rows.take(rows_view(xd), chunks[j].first, chunks[j].second), wd);
    y_dtype = part.dtype();
    return part;
  }, [] {});
  const bool need_w = w.requires_grad();
  return autograd::record1(
      "LinearReduceScatter", {x, w}, y_dtype == DType::f32 ? sum : sum.to(y_dtype),
      [&group, rows, chunks, xd, wd, need_w](const TV& g) -> TV {
        if (!g[0].defined()) return {Tensor(), Tensor()};
        Shape full_shape = xd.shape();
        full_shape.back() = wd.size(0);
        const Tensor dy = Tensor::empty(full_shape, g[0].dtype(), g[0].device());
        Tensor dx;
        gather_chunks(rows_view(g[0]), group, chunks, [&](size_t j, const Tensor& chunk) {
          rows.put(chunk, chunks[j].first, chunks[j].second, rows_view(dy));
          Tensor d = ops::linear_backward_input(chunk, wd);
          if (!dx.defined()) dx = Tensor::empty(xd.shape(), d.dtype(), d.device());
          rows.put(d, chunks[j].first, chunks[j].second, rows_view(dx));
        });
        Tensor dw;
        if (need_w) {
          dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
          ops::linear_backward_weight(dy, xd, dw, false);
        }
        return {dx, dw};
      });
}

Variable all_gather_sequence(const Variable& x, ProcessGroup& group) {
  if (group.size() == 1) return x;
  return autograd::record1("AllGatherSequence", {x}, gather_sequence(x.data(), group),
                           [&group](const TV& g) -> TV { return {reduce_scatter_sum(g[0], group)}; });
}

Variable all_gather_sequence(const Variable& x, ProcessGroup& group, const std::vector<nn::Linear*>& consumers) {
  if (group.size() == 1 || consumers.empty()) return all_gather_sequence(x, group);
  std::shared_ptr<nn::GatherCodec> codec = consumers.front()->input_gather_codec();
  for (nn::Linear* c : consumers) {
    auto other = c->input_gather_codec();
    if (!codec || !other || other->kind() != codec->kind()) return all_gather_sequence(x, group);
  }
  const Tensor value = gather_sequence_encoded(x.data(), *codec, group, consumers);
  return autograd::record1("AllGatherSequence(" + codec->kind() + ")", {x}, value,
                           [&group](const TV& g) -> TV { return {reduce_scatter_sum(g[0], group)}; });
}

Variable reduce_scatter_sequence(const Variable& x, ProcessGroup& group, nn::Linear* producer) {
  if (group.size() == 1) return x;
  return autograd::record1("ReduceScatterSequence", {x}, reduce_scatter_sum(x.data(), group),
                           [&group, producer](const TV& g) -> TV {
                             std::shared_ptr<nn::GatherCodec> codec = producer ? producer->output_grad_gather_codec() : nullptr;
                             if (!codec) return {gather_sequence(g[0], group)};
                             return {gather_sequence_encoded(g[0], *codec, group, {producer})};
                           });
}

Variable all_gather_columns(const Variable& x, ProcessGroup& group) {
  const int T = group.size();
  if (T == 1) return x;
  const Tensor& xd = x.data();
  const std::int64_t C = xd.shape().back(), rows = xd.numel() / C;
  Tensor buf = Tensor::empty({T * xd.numel()}, xd.dtype(), xd.device());
  group.all_gather(xd.view({xd.numel()}), buf);
  Shape shape = xd.shape();
  shape.back() = C * T;
  Tensor out = Tensor::empty(shape, xd.dtype(), xd.device());
  for (int t = 0; t < T; ++t)
    for (std::int64_t r = 0; r < rows; ++r)
      out.view_range(r * C * T + t * C, {C}).copy_from(buf.view_range((t * rows + r) * C, {C}));
  const int rank = group.rank();
  return autograd::record1("AllGatherColumns", {x}, out, [C, rows, T, rank, shape = xd.shape()](const TV& g) -> TV {
    Tensor d = Tensor::empty(shape, g[0].dtype(), g[0].device());
    for (std::int64_t r = 0; r < rows; ++r) d.view_range(r * C, {C}).copy_from(g[0].view_range(r * C * T + rank * C, {C}));
    return {d};
  });
}

Variable vocab_parallel_cross_entropy(const Variable& logits, const Tensor& targets, std::int64_t first_col,
                                      ProcessGroup& group, std::int64_t ignore_index) {
  const Tensor& x = logits.data();
  Tensor m = ops::cross_entropy_row_max(x);
  group.all_reduce(m, ReduceOp::max);
  Tensor sums = ops::cross_entropy_shard_sums(x, targets, first_col, m);
  group.all_reduce(sums, ReduceOp::sum);
  const std::int64_t N = x.size(0);
  double total = 0;
  std::int64_t n_valid = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    if (targets.data<std::int64_t>()[n] == ignore_index) continue;
    total += m.data<double>()[n] + std::log(sums.data<double>()[n]) - sums.data<double>()[N + n];
    ++n_valid;
  }
  const double loss = n_valid ? total / double(n_valid) : 0.0;
  const bool half = x.dtype() == DType::bf16 || x.dtype() == DType::f16;
  Tensor out = Tensor::full({1}, loss, half ? DType::f32 : x.dtype(), x.device());
  Tensor sum = sums.view_range(0, {N});
  return autograd::record1("VocabParallelCrossEntropy", {logits}, out,
                           [x, targets, first_col, m, sum, n_valid, ignore_index](const TV& g) -> TV {
                             return {ops::cross_entropy_shard_backward(x, targets, first_col, m, sum, n_valid,
                                                                       g[0].item(0), ignore_index)};
                           });
}

int TpLayout::dim_of(const std::string& fqn) const {
  auto it = sharded_dim.find(fqn);
  return it == sharded_dim.end() ? -1 : it->second;
}

Shape TpLayout::global_shape(const std::string& fqn, Shape local) const {
  const int d = dim_of(fqn);
  if (d >= 0) local[size_t(d)] *= size;
  return local;
}

void TpLayout::init_local(const std::string& fqn, Tensor& rows, std::int64_t first,
                          const std::function<void(Tensor&, std::int64_t)>& init) const {
  const int d = dim_of(fqn);
  if (d < 0) return init(rows, first);
  const Shape& local = local_shape.at(fqn);
  const std::int64_t row_elems = numel_of(local) / local[0];
  if (d == 0) return init(rows, first + rank * local[0] * row_elems);
  // Split on columns: local row r is columns [rank c, (rank + 1) c) of global row r.
  const std::int64_t c = local[1], C = c * size, first_row = first / c, n = rows.numel() / c;
  for (std::int64_t r = 0; r < n; ++r) {
    Tensor part = rows.view_range(r * c, {c});
    init(part, (first_row + r) * C + rank * c);
  }
}

}  // namespace titan::dist
