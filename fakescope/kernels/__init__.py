"""Hand-written GPU kernels for the hot paths bitsandbytes serves poorly.

- ``nf4_matmul``: a Triton kernel that multiplies a few rows (2 to 16, a decode step at
  small batch) by an NF4 (bitsandbytes 4-bit) weight, dequantizing inside the GEMM.
- ``nf4_dispatch``: puts that kernel into a loaded model's ``Linear4bit`` layers, per
  weight shape, only where a self-check passes and (on CUDA) a timing says it is faster.

Nothing here imports Triton at import time: the package works, and reports the kernel as
unavailable, on machines without it.
"""
