"""NF4 models on the CPU, kept in the weight layout bitsandbytes uses on GPUs."""

from __future__ import annotations

from typing import Any


def gpu_layout_on_cpu(forensic: Any) -> Any:
    """Stop bitsandbytes from repacking NF4 weights for its AVX512-BF16 CPU kernel.

    On a CPU with AVX512-BF16, `Linear4bit` repacks its weight at its first CPU forward
    (another nibble order, bf16 absmax, no double quantization). The Triton kernel and the
    compiled layers these tests check target the layout GPUs use, so without this the
    tests would pass or fail by the CPU they happen to run on.
    """
    import bitsandbytes as bnb

    for module in forensic.model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return forensic
