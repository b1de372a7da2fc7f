#!/usr/bin/env python3
"""The CUDA workload of scripts/gpu-smoke.sh: bf16 matmul throughput and pinned host<->device
copy bandwidth, one JSON object on stdout. Runs the same on the bare host and in the container.

  python3 gpu_workload.py --where host [--size 8192] [--reps 7] [--fake]

--fake skips CUDA (no torch needed) and reports fixed numbers, so the smoke can be rehearsed on
a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


def _median_min_max(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def measure(size: int, reps: int, per_rep: int, copy_mib: int, warmup_s: float) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"cuda_available": False, "torch": torch.__version__}
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    a = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    out = torch.empty(size, size, device=dev, dtype=torch.bfloat16)
    # Warm up for a fixed time, not a fixed count: the clocks ramp up under load.
    end = time.monotonic() + warmup_s
    while time.monotonic() < end:
        for _ in range(10):
            torch.matmul(a, b, out=out)
        torch.cuda.synchronize()
    flops = 2.0 * size**3 * per_rep
    tflops = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(per_rep):
            torch.matmul(a, b, out=out)
        stop.record()
        stop.synchronize()
        tflops.append(flops / (start.elapsed_time(stop) / 1e3) / 1e12)
    del a, b, out

    nbytes = copy_mib * 2**20
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    host.fill_(1)

    def copy_gbs(dst: Any, src: Any) -> list[float]:
        dst.copy_(src, non_blocking=True)  # warm-up
        torch.cuda.synchronize()
        rates = []
        for _ in range(reps):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src, non_blocking=True)
            stop.record()
            stop.synchronize()
            rates.append(nbytes / (start.elapsed_time(stop) / 1e3) / 1e9)
        return rates

    h2d = copy_gbs(device, host)
    d2h = copy_gbs(host, device)
    return {
        "cuda_available": True,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": props.name,
        "gpu_memory_bytes": props.total_memory,
        "matmul_bf16_tflops": _median_min_max(tflops),
        "h2d_pinned_gbs": _median_min_max(h2d),
        "d2h_pinned_gbs": _median_min_max(d2h),
    }


def fake() -> dict[str, Any]:
    return {
        "cuda_available": False,
        "fake": True,
        "gpu": "none (rehearsal)",
        "matmul_bf16_tflops": _median_min_max([1.0]),
        "h2d_pinned_gbs": _median_min_max([1.0]),
        "d2h_pinned_gbs": _median_min_max([1.0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--where", default="host", help="label for the result: host, container")
    parser.add_argument("--size", type=int, default=8192, help="matrix size (n x n x n)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (median taken)")
    parser.add_argument("--per-rep", type=int, default=20, help="matmuls per timed repetition")
    parser.add_argument("--copy-mib", type=int, default=1024, help="bytes per copy, MiB")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds")
    parser.add_argument("--fake", action="store_true", help="no CUDA: fixed numbers")
    args = parser.parse_args()
    started = time.time()
    if args.fake:
        result = fake()
    else:
        result = measure(args.size, args.reps, args.per_rep, args.copy_mib, args.warmup)
    result |= {
        "where": args.where,
        "size": args.size,
        "pid": os.getpid(),
        "python": sys.executable,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
    }
    print(json.dumps(result), flush=True)
    return 0 if result.get("cuda_available") or args.fake else 3


if __name__ == "__main__":
    sys.exit(main())
