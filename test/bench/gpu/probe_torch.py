#!/usr/bin/env python3
"""Device ceilings through PyTorch, one JSON line each (the device check's probe stage).

- sdpa: torch SDPA with the flash backend at ghost-0.1b's attention shape (B8 T1024 H12 D64,
  bf16, causal), forward and forward+backward: the reference for PRIMAL's attention kernels.
- copy: device-to-device copy bandwidth (bytes read + written) of a 2 GiB buffer.
- matmul: bf16 8192^3 on random data (the matrix ceiling METHOD.md asks for).
Timed with CUDA events after warm-up; the median of the repeats.
"""
import json
import statistics
import sys


def timed(torch, fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    try:
        import torch
    except ImportError as e:
        emit({"probe": "torch", "error": f"no torch: {e}"})
        return 1
    if not torch.cuda.is_available():
        emit({"probe": "torch", "error": "no CUDA device"})
        return 1
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    torch.manual_seed(0)

    # SDPA flash at ghost-0.1b's shape.
    B, T, H, D = 8, 1024, 12, 64
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        import torch.nn.functional as F
        q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        dout = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fwd = timed(torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))

            def fwd_bwd():
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                out.backward(dout)

            both = timed(torch, fwd_bwd)
        flops_fwd = 2.0 * B * H * T * T * D  # causal: half of 4*T^2*D
        emit({"probe": "sdpa_flash", "gpu": name, "B": B, "T": T, "H": H, "D": D, "dtype": "bf16",
              "causal": True, "fwdMs": round(fwd, 4), "fwdBwdMs": round(both, 4),
              "fwdTflops": round(flops_fwd / (fwd * 1e-3) / 1e12, 1),
              "fwdBwdTflops": round(3.5 * flops_fwd / (both * 1e-3) / 1e12, 1)})
        del q, k, v, dout
    except Exception as e:  # noqa: BLE001 - a probe reports, never stops the others
        emit({"probe": "sdpa_flash", "error": repr(e)[:500]})

    # Copy bandwidth.
    try:
        n = (2 << 30) // 4
        src = torch.rand(n, device=dev)
        dst = torch.empty_like(src)
        ms = timed(torch, lambda: dst.copy_(src), reps=10)
        emit({"probe": "copy", "gpu": name, "bytes": 2 * n * 4, "ms": round(ms, 4),
              "gbps": round(2 * n * 4 / (ms * 1e-3) / 1e9, 1)})
        del src, dst
    except Exception as e:  # noqa: BLE001
        emit({"probe": "copy", "error": repr(e)[:500]})

    # bf16 matmul ceiling.
    try:
        s = 8192
        a = torch.randn(s, s, device=dev, dtype=torch.bfloat16)
        b = torch.randn(s, s, device=dev, dtype=torch.bfloat16)
        ms = timed(torch, lambda: a @ b, reps=10)
        emit({"probe": "matmul_bf16", "gpu": name, "n": s, "ms": round(ms, 4),
              "tflops": round(2.0 * s ** 3 / (ms * 1e-3) / 1e12, 1)})
    except Exception as e:  # noqa: BLE001
        emit({"probe": "matmul_bf16", "error": repr(e)[:500]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
