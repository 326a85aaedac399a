#!/usr/bin/env python3
"""The same-chip anchor for the GPU device check (scripts/bench_gpu.sh): PyTorch on the GPU it
runs on, at the shapes bench_gemm and bench_attention time, so the check prints titan.cpp / PyTorch
ratios from one run on one chip.

  GEMMs: y = x W^T with M = 8192 tokens at the five Llama 3 8B shapes (as bench_gemm), bf16
         torch.matmul, and torch._scaled_mm with e4m3 operands, tensorwise and rowwise scales
         (fast accumulation, bf16 output), TFLOP/s.
  Attention: scaled_dot_product_attention, causal, bf16, B=1 S=8192 H=32 KV=8 D=128 (GQA), forward
         and forward+backward, with the flash and the cuDNN backends, ms and TFLOP/s.

Output lines start with "anchor " so the check can pick them out; nothing here is a dependency of
the build or of CI (PyTorch is on the lent GPU machine, not in the project). --iters sets the timed
repetitions (median of them, after 3 warm-up ones).
"""
import argparse
import statistics
import sys

GEMM_SHAPES = [("wq/wo", 4096, 4096), ("wk/wv", 1024, 4096), ("w1/w3", 14336, 4096), ("w2", 4096, 14336),
               ("output", 128256, 4096)]


def median_ms(torch, fn, iters):
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def gemms(torch, M, iters):
    print(f"anchor gemm M={M} layer N K bf16 fp8tw fp8rw (TFLOP/s)")
    e4m3 = torch.float8_e4m3fn
    for name, N, K in GEMM_SHAPES:
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
        flop = 2.0 * M * N * K
        cells = []
        cells.append(flop / median_ms(torch, lambda: torch.matmul(x, w.t()), iters) / 1e9)
        x8, w8 = x.to(e4m3), w.to(e4m3)
        one = torch.ones((), device="cuda", dtype=torch.float32)
        row_x = torch.ones(M, 1, device="cuda", dtype=torch.float32)
        row_w = torch.ones(1, N, device="cuda", dtype=torch.float32)
        for sa, sb in ((one, one), (row_x, row_w)):
            try:
                fn = lambda: torch._scaled_mm(x8, w8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16,
                                              use_fast_accum=True)
                cells.append(flop / median_ms(torch, fn, iters) / 1e9)
            except Exception as e:  # an older torch or a GPU without FP8
                print(f"anchor note {name}: _scaled_mm: {e}".splitlines()[0], file=sys.stderr)
                cells.append(float("nan"))
        print(f"anchor gemm {name} {N} {K} " + " ".join(f"{c:.1f}" for c in cells))
        del x, w, x8, w8
        torch.cuda.empty_cache()


def attention(torch, iters):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    B, S, H, KV, D = 1, 8192, 32, 8, 128
    # Causal attention FLOPs (as bench_attention): forward 2 GEMMs over half the S x S scores,
    # backward 2.5x the forward's.
    fwd_flop = 2 * 2.0 * B * H * S * S * D / 2
    print(f"anchor attention B={B} S={S} H={H} KV={KV} D={D} backend fwd_ms fwdbwd_ms fwd_tflops fwdbwd_tflops")
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        q = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, KV, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, KV, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        dout = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)

        def forward():
            try:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            except (RuntimeError, TypeError):  # a backend without GQA: the K/V heads repeated
                rep = H // KV
                return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                                      is_causal=True)

        try:
            with sdpa_kernel(backend):
                fwd = median_ms(torch, forward, iters)
                both = median_ms(torch, lambda: torch.autograd.backward(forward(), dout), iters)
            print(f"anchor attention {name} {fwd:.3f} {both:.3f} {fwd_flop / fwd / 1e9:.1f} "
                  f"{3.5 * fwd_flop / both / 1e9:.1f}")
        except Exception as e:
            print(f"anchor attention {name} unavailable: {str(e).splitlines()[0]}")
        del q, k, v, dout
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=8192, help="M of the GEMMs (bench_gemm's second argument)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("anchor unavailable: PyTorch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("anchor unavailable: no CUDA device")
        return 0
    print(f"anchor device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    gemms(torch, args.tokens, args.iters)
    attention(torch, args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
