"""How much arithmetic a piece of work is, and how much of it this machine can do per second.

Used by the benchmarks to say whether a rate is limited by the code or by the processor:
``count_gflop`` counts the floating-point operations of one call (matrix products, convolutions
and attention, forward and backward), ``matmul_ceiling`` measures the GFLOP/s of a large matrix
product (fp32 unless asked) on this machine with the benchmark's thread count (the practical
ceiling for transformer training on a CPU).

Usage::

    from compute import count_gflop, matmul_ceiling
    gflop = count_gflop(lambda: learner.observe(frame))
    print(gflop / seconds, 'GFLOP/s of', matmul_ceiling(), 'GFLOP/s possible')
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch.utils import flop_counter

_registered = False


def _register_cpu_attention() -> None:
    """PyTorch counts its CUDA attention kernels but not the CPU flash-attention kernel that
    ``F.scaled_dot_product_attention`` runs here; count it with the same formulas (the causal
    mask's skipped half is counted too, as PyTorch does for the CUDA kernels)."""
    global _registered
    if _registered:
        return
    aten = torch.ops.aten

    @flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _forward(
        query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any
    ) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    @flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _backward(
        grad_out_shape,
        query_shape,
        key_shape,
        value_shape,
        *args: Any,
        out_shape=None,
        **kwargs: Any,
    ) -> int:
        return flop_counter.sdpa_backward_flop_count(
            grad_out_shape, query_shape, key_shape, value_shape
        )

    _registered = True


def count_gflop(fn: Callable[[], Any]) -> tuple[float, dict[str, float]]:
    """Run ``fn`` once under a FLOP counter.

    Returns:
        (total GFLOP, GFLOP per operator, largest first).
    """
    _register_cpu_attention()
    counter = flop_counter.FlopCounterMode(display=False)
    with counter:
        fn()
    per_op = {str(k): v / 1e9 for k, v in counter.get_flop_counts()['Global'].items()}
    return counter.get_total_flops() / 1e9, dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def matmul_ceiling(
    size: int = 2048, repeats: int = 8, device: str = 'cpu', dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of a [size x size] matrix product in ``dtype`` (best of ``repeats``), on the current
    thread count: what this processor delivers on the most favourable kernel."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float('inf')
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device != 'cpu':
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9
