"""Detect-batch preprocessing on the CPU: transformers' processor against pixels.py.

    python benchmarks/bench_preprocess.py            # 1024 px images, batches 1, 8, 32
    python benchmarks/bench_preprocess.py --quick    # smoke run for CI (small counts)
    python benchmarks/bench_preprocess.py --json out.json

Both paths get LLaVA-1.5's image processor configuration (CLIP ViT-L/14 at 336 px) and
run the way ``ForensicModel.prepare_detect`` runs them: a batch of 8 or more is split
over 4 threads. Reported: milliseconds per batch (median), per image, the ratio of the
two in the same run, and the largest difference between their pixel values. A verdict
at batch 32 on a GPU overlaps this work with the previous batch's forward, where it
competes for the GIL with the thread launching the forward's kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from fakescope.pixels import ClipPixels

LLAVA_15 = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}
THREADS = 4  # as fakescope.model._PIXEL_THREADS


def images(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(size, size), (size, size * 3 // 4), (size * 2 // 3, size)]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in (shapes[i % 3] for i in range(count))
    ]


def threaded(
    pool: ThreadPoolExecutor, chunk_fn: Callable[[list[Image.Image]], torch.Tensor]
) -> Callable[[Sequence[Image.Image]], torch.Tensor]:
    def run(batch: Sequence[Image.Image]) -> torch.Tensor:
        if len(batch) < 2 * THREADS:
            return chunk_fn(list(batch))
        size = -(-len(batch) // THREADS)
        chunks = [list(batch[i : i + size]) for i in range(0, len(batch), size)]
        return torch.cat(list(pool.map(chunk_fn, chunks)))

    return run


def paired_ms(a: Callable[[], Any], b: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median ms of ``a`` and of ``b``, run alternately so that noise hits both alike."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, into in ((a, times[0]), (b, times[1])):
            started = time.perf_counter()
            fn()
            into.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke run)")
    parser.add_argument("--size", type=int, default=1024, help="long side of the test images")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else 9
    batches = (1, 8) if args.quick else (1, 8, 32)
    processor = LlavaImageProcessorPil(**LLAVA_15)
    fast = ClipPixels.for_processor(processor)
    assert fast is not None, "LLaVA-1.5's configuration must take the fast path"

    def processor_chunk(chunk: list[Image.Image]) -> torch.Tensor:
        values: torch.Tensor = processor(images=chunk, return_tensors="pt")["pixel_values"]
        return values

    results: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "image_size": args.size,
        "batches": {},
    }
    with ThreadPoolExecutor(THREADS) as pool:
        old = threaded(pool, processor_chunk)
        crops = threaded(pool, fast.crops)

        def new(batch: Sequence[Image.Image]) -> torch.Tensor:
            return fast.normalize(crops(batch))

        header = ("batch", "processor ms", "pixels.py ms", "ratio", "max diff")
        print("{:>5} {:>13} {:>13} {:>6} {:>9}".format(*header))
        for batch in batches:
            subset = images(batch, args.size)
            diff = float((old(subset) - new(subset)).abs().max())
            old_ms, new_ms = paired_ms(
                lambda subset=subset: old(subset), lambda subset=subset: new(subset), reps
            )
            results["batches"][str(batch)] = {
                "processor_ms": old_ms,
                "pixels_ms": new_ms,
                "processor_ms_per_image": old_ms / batch,
                "pixels_ms_per_image": new_ms / batch,
                "speedup": old_ms / new_ms,
                "max_abs_diff": diff,
            }
            ratio = old_ms / new_ms
            print(f"{batch:>5} {old_ms:>13.1f} {new_ms:>13.1f} {ratio:>5.2f}x {diff:>9.1e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
