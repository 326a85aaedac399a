#include "dist/tensor_parallel.hpp"

#include <cmath>

#include "autograd/functions.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

namespace {

using TV = std::vector<Tensor>;

// [B, S, R...] -> [T, B, S/T, R...] (rank t's sequence block first) and back: B x T contiguous
// blocks of S/T rows each, copied one by one.
Tensor to_rank_major(const Tensor& x, int T, DType dtype) {
  const std::int64_t B = x.size(0), S = x.size(1), row = x.numel() / (B * S), Sl = S / T;
  Tensor out = Tensor::empty({x.numel()}, dtype, x.device());
  for (int t = 0; t < T; ++t)
    for (std::int64_t b = 0; b < B; ++b)
      out.view_range(((t * B + b) * Sl) * row, {Sl * row}).copy_from(x.view_range((b * S + t * Sl) * row, {Sl * row}));
  return out;
}
Tensor from_rank_major(const Tensor& buf, const Shape& shape, DType dtype, int T) {
  const std::int64_t B = shape[0], S = shape[1], row = numel_of(shape) / (B * S), Sl = S / T;
  Tensor out = Tensor::empty(shape, dtype, buf.device());
  for (int t = 0; t < T; ++t)
    for (std::int64_t b = 0; b < B; ++b)
      out.view_range((b * S + t * Sl) * row, {Sl * row}).copy_from(buf.view_range(((t * B + b) * Sl) * row, {Sl * row}));
  return out;
}

Shape with_dim(Shape s, size_t d, std::int64_t v) {
  s[d] = v;
  return s;
}

// Sequence shard [B, S/T, ...] -> [B, S, ...] in the shard's dtype.
Tensor gather_sequence(const Tensor& x, ProcessGroup& g) {
  const int T = g.size();
  Tensor buf = Tensor::empty({T * x.numel()}, x.dtype(), x.device());
  g.all_gather(x.view({x.numel()}), buf);
  return from_rank_major(buf, with_dim(x.shape(), 1, x.size(1) * T), x.dtype(), T);
}

// Partial [B, S, ...] -> the sum's sequence shard [B, S/T, ...], summed in float32.
Tensor reduce_scatter_sum(const Tensor& x, ProcessGroup& g) {
  const int T = g.size();
  if (x.size(1) % T != 0)
    throw std::invalid_argument("tensor parallel: sequence length " + std::to_string(x.size(1)) +
                                " is not a multiple of the TP degree " + std::to_string(T));
  Tensor in = to_rank_major(x, T, DType::f32);
  const Shape out_shape = with_dim(x.shape(), 1, x.size(1) / T);
  Tensor out = Tensor::empty(out_shape, DType::f32, x.device());
  g.reduce_scatter(in, out.view({out.numel()}), ReduceOp::sum);
  return x.dtype() == DType::f32 ? out : out.to(x.dtype());
}

}  // namespace

Variable all_gather_sequence(const Variable& x, ProcessGroup& group) {
  if (group.size() == 1) return x;
  return autograd::record1("AllGatherSequence", {x}, gather_sequence(x.data(), group),
                           [&group](const TV& g) -> TV { return {reduce_scatter_sum(g[0], group)}; });
}

Variable all_gather_sequence(const Variable& x, ProcessGroup& group, const std::vector<nn::Linear*>& consumers) {
  if (group.size() == 1 || consumers.empty()) return all_gather_sequence(x, group);
  std::shared_ptr<nn::InputGatherCodec> codec = consumers.front()->input_gather_codec();
  for (nn::Linear* c : consumers) {
    auto other = c->input_gather_codec();
    if (!codec || !other || other->kind() != codec->kind()) return all_gather_sequence(x, group);
  }
  const Tensor encoded = codec->encode(x.data(), [&group](const Tensor& t) { group.all_reduce(t, ReduceOp::max); });
  const Tensor gathered = gather_sequence(encoded, group);
  Tensor value = codec->decode(gathered, x.data().dtype());
  for (nn::Linear* c : consumers) codec->arrived(*c, value, gathered);
  return autograd::record1("AllGatherSequence(" + codec->kind() + ")", {x}, value,
                           [&group](const TV& g) -> TV { return {reduce_scatter_sum(g[0], group)}; });
}

Variable reduce_scatter_sequence(const Variable& x, ProcessGroup& group) {
  if (group.size() == 1) return x;
  return autograd::record1("ReduceScatterSequence", {x}, reduce_scatter_sum(x.data(), group),
                           [&group](const TV& g) -> TV { return {gather_sequence(g[0], group)}; });
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
