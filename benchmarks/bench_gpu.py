"""GPU benchmark of FakeScope's model paths: verdicts (one forward) and explanations.

    python benchmarks/bench_gpu.py [--quantization nf4|bf16|both] [--tiny] [--out DIR]

On a GPU it builds a random-weight checkpoint of LLaVA-1.5-7B's shape (no download),
loads it through ``fakescope.loading.load_model`` (the server's loader) as NF4 and/or
bf16, and measures: verdict latency at batch 1, per-image cost at batch 8 and 32,
sustained verdicts per second, decoding tokens per second at batch 1 and 8, time to
first token and peak GPU memory, each speed-up of issue 7 against the shipped path, and
the card's own ceilings. It prints one table and writes one JSON per quantization.
``--tiny`` runs the same code on the CPU with the tiny checkpoint in seconds (for CI):
its numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import gpu_measurements as gm

from fakescope.cuda_graphs import VerdictGraphs
from fakescope.model import ForensicModel

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUANTIZATIONS = {"nf4": ("nf4", "bfloat16"), "bf16": ("none", "bfloat16")}

# Issue 7's targets (H100, NF4): name -> (result key, comparison, threshold).
TARGETS = {
    "verdicts_per_s_b32 >= 70": ("verdicts_per_s_b32", ">=", 70.0),
    "verdict_ms_b1 <= 50": ("verdict_ms_b1", "<=", 50.0),
    "decode_tok_s_b1 >= 100": ("decode_tok_s_b1", ">=", 100.0),
    "decode_tok_s_b8 >= 800": ("decode_tok_s_b8", ">=", 800.0),
}


@dataclass(frozen=True)
class Settings:
    """How much to measure: the GPU run and the tiny CPU run differ only here."""

    device: torch.device
    image_size: int
    verdict_reps: dict[int, int]
    sustained_batches: int
    hf_decode_tokens: int
    graph_decode_tokens: int
    explore: bool  # ablations, graphs, compilation: GPU only
    budget_s: float  # optional experiments start only while time is left
    compile: str  # load_model's compile mode for the shipped path: auto, on or off

    @classmethod
    def for_run(cls, tiny: bool, budget_s: float, *, compile: str = "auto") -> Settings:
        if tiny:
            return cls(
                torch.device("cpu"), 64, {1: 2, 8: 1, 32: 1}, 2, 3, 3, False, budget_s, compile
            )
        return cls(
            torch.device("cuda"), 1024, {1: 10, 8: 5, 32: 3}, 4, 32, 128, True, budget_s, compile
        )


class Run:
    """One quantization's results, with errors and timings of each step recorded."""

    def __init__(self, started: float, settings: Settings) -> None:
        self.started = started
        self.settings = settings
        self.data: dict[str, Any] = {
            "variants": {},
            "memory_gib": {},
            "errors": {},
            "skipped_for_time": [],
        }

    def time_left(self) -> float:
        return self.settings.budget_s - (time.perf_counter() - self.started)

    def attempt(
        self, name: str, step: Callable[[], Any], *, optional: bool = False, needs_s: float = 45
    ) -> Any:
        """Run one measurement; a failure is recorded, not fatal (the rest still runs).

        An ``optional`` one is skipped when less than ``needs_s`` of the budget is left.
        """
        if optional and self.time_left() < needs_s:
            self.data["skipped_for_time"].append(name)
            return None
        began = time.perf_counter()
        try:
            value = step()
        except Exception as exc:  # one broken variant must not lose the others
            self.data["errors"][name] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"  {name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            if self.settings.device.type == "cuda":
                torch.cuda.empty_cache()
            return None
        print(f"  {name}: {_short(value)} ({time.perf_counter() - began:.1f} s)", flush=True)
        return value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


# -- one quantization ---------------------------------------------------------------------


def measure(
    checkpoint: Path, quant: str, settings: Settings, run: Run, save: Callable[[], None]
) -> None:
    """Load ``checkpoint`` as ``quant`` and measure everything, calling ``save`` as it goes."""
    from fakescope.loading import load_model

    device = settings.device
    data = run.data
    quantization, dtype = QUANTIZATIONS[quant]
    gm.reset_peak(device)
    began = time.perf_counter()
    fm = load_model(
        str(checkpoint),
        quantization=quantization,
        device=str(device),
        dtype=dtype,
        compile=settings.compile,
        progress=False,
    )
    data["load_s"] = time.perf_counter() - began
    if device.type == "cuda":
        data["memory_gib"]["weights"] = torch.cuda.memory_allocated(device) / gm.GIB
    # What the server does before it says ready: graph captures, layer compilation.
    began = time.perf_counter()
    run.attempt("warm_up", lambda: fm.warm_up(max(settings.verdict_reps)))
    data["warm_up_s"] = time.perf_counter() - began
    data["compiled_layers"] = _compiled_state(fm)
    data["nf4_kernel"] = None if fm.kernel_report is None else fm.kernel_report.to_dict()
    images = gm.synthetic_images(32, settings.image_size)
    if device.type == "cuda":
        gm.warm_gpu(fm, images, seconds=3)

    measure_verdicts(fm, images, settings, run)
    measure_decoding(fm, images, settings, run)
    data["compiled_layers"] = _compiled_state(fm)  # a failure on a later shape shows here
    save()  # the core numbers survive whatever the experiments below do
    if settings.explore:
        for explore in (explore_small_batch_kernel, explore_compiled_layers, explore_verdicts):
            run.attempt(explore.__name__, partial(explore, fm, images, settings, run))
            save()


def _compiled_state(fm: ForensicModel) -> str:
    layers = fm.compiled_layers
    if layers is None:
        return "off"
    return "on" if layers.failed is None else f"failed: {layers.failed}"[:500]


def measure_verdicts(fm: ForensicModel, images: list[Any], settings: Settings, run: Run) -> None:
    """The shipped path: ``prepare_detect`` (CPU) then ``score_inputs`` (one forward)."""
    device, data = settings.device, run.data
    for batch, reps in settings.verdict_reps.items():
        subset = images[:batch]
        gm.reset_peak(device)
        prep = run.attempt(
            f"prepare_ms_b{batch}",
            partial(gm.median_ms, partial(fm.prepare_detect, subset), device, reps=reps),
        )
        inputs = fm.prepare_detect(subset)
        forward = run.attempt(
            f"forward_ms_b{batch}",
            partial(gm.median_ms, partial(fm.score_inputs, inputs), device, reps=reps),
        )
        data["memory_gib"][f"verdict_b{batch}"] = gm.peak_gib(device)
        if prep is None or forward is None:
            continue
        data[f"prepare_ms_b{batch}"] = prep
        data[f"forward_ms_b{batch}"] = forward
        data[f"per_image_ms_b{batch}"] = (prep + forward) / batch
        data[f"forward_per_image_ms_b{batch}"] = forward / batch
    graphs = fm.verdict_graphs
    compiled = "+compiled_layers" if _compiled_state(fm) == "on" else ""
    for batch in settings.verdict_reps:
        replayed = graphs is not None and batch <= graphs.max_batch
        data[f"verdict_path_b{batch}"] = ("cuda_graph" if replayed else "eager") + compiled
    # The shipped path (graphs, compiled layers) against transformers' plain forward.
    for batch in (8, max(settings.verdict_reps)):
        data[f"p_fake_max_abs_diff_b{batch}"] = run.attempt(
            f"p_fake_max_abs_diff_b{batch}",
            partial(gm.p_fake_difference, fm, images[:batch]),
        )
    if "prepare_ms_b1" in data:
        # Latency as a user sees it: preprocessing and the forward, one after the other.
        data["verdict_ms_b1"] = data["prepare_ms_b1"] + data["forward_ms_b1"]
    batch = max(settings.verdict_reps)
    sustained = run.attempt(
        f"verdicts_per_s_b{batch}",
        lambda: gm.sustained_verdicts_per_s(
            fm.prepare_detect,
            fm.score_inputs,
            images[:batch],
            batches=settings.sustained_batches,
            device=device,
        ),
    )
    if sustained is not None:
        data[f"verdicts_per_s_b{batch}"] = sustained
    for b in (8, 32):
        if f"per_image_ms_b{b}" in data:
            data[f"verdicts_per_s_b{b}_serial"] = 1000 / data[f"per_image_ms_b{b}"]


def measure_decoding(fm: ForensicModel, images: list[Any], settings: Settings, run: Run) -> None:
    """Explanations through ``generate_batch``: the path it takes by default on this device
    (graph decoder on a GPU) and the other one, for comparison in the same run."""
    device, data, variants = settings.device, run.data, run.data["variants"]
    shipped_path = "graph_decoder" if fm.graph_decoding else "generate"
    tokens = {"graph_decoder": settings.graph_decode_tokens, "generate": settings.hf_decode_tokens}
    for batch in (1, 8):
        for path in ("graph_decoder", "generate"):
            gm.reset_peak(device)
            variants[f"decode_b{batch}_{path}"] = run.attempt(
                f"decode_b{batch}_{path}",
                partial(
                    gm.decode_through_model,
                    fm,
                    images[:batch],
                    tokens[path],
                    device,
                    graph=path == "graph_decoder",
                ),
            )
            data["memory_gib"][f"decode_b{batch}_{path}"] = gm.peak_gib(device)
        shipped = variants[f"decode_b{batch}_{shipped_path}"]
        if shipped is not None:
            data[f"decode_tok_s_b{batch}"] = shipped["tok_s"]
            if batch == 1:
                data["ttft_ms_b1"] = shipped["ttft_ms"]
    data["decode_path"] = shipped_path
    # Continuous batching (an answer joining a running decode): right answers first.
    joined = run.attempt(
        "decode_joined",
        partial(gm.joined_decode, fm, images, max(16, settings.graph_decode_tokens), device),
    )
    variants["decode_joined"] = joined
    data["continuous_matches_eager"] = None if joined is None else joined["matches_eager"]
    data["peak_mem_gib_b1"] = _max_known(
        data["memory_gib"].get("verdict_b1"),
        data["memory_gib"].get(f"decode_b1_{shipped_path}"),
    )


def _max_known(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def explore_verdicts(fm: ForensicModel, images: list[Any], settings: Settings, run: Run) -> None:
    """Each verdict speed-up against the shipped forward, one change at a time."""
    device, variants = settings.device, run.data["variants"]
    for batch in (1, 8, 32):
        inputs = fm.prepare_detect(images[:batch])
        reps = settings.verdict_reps[batch]
        cases: dict[str, Callable[[], Any]] = {
            "eager": partial(gm.forward_variant, fm, inputs),
            "all_logits": partial(gm.forward_variant, fm, inputs, keep_last=False),
            "with_kv_cache": partial(gm.forward_variant, fm, inputs, use_cache=True),
        }
        if batch == 32 and device.type == "cuda":
            cases["eager_pinned_non_blocking"] = partial(
                gm.forward_variant, fm, gm.pinned(inputs), non_blocking=True
            )
        for name, call in cases.items():
            variants[f"verdict_b{batch}_{name}_ms"] = run.attempt(
                f"verdict_b{batch}_{name}_ms",
                partial(gm.median_ms, call, device, reps=reps),
                optional=True,
            )
    # prepare_detect before it reused the prompt's ids and spread pixels over threads.
    texts = [fm._detect_text] * 32
    variants["prepare_b32_whole_processor_ms"] = run.attempt(
        "prepare_b32_whole_processor_ms",
        lambda: gm.median_ms(lambda: fm._encode(images[:32], texts), device, reps=3),
        optional=True,
    )
    run.attempt("eager_attention", lambda: eager_attention(fm, images, settings, run))
    variants["verdict_b1_cuda_graph_capture"] = run.attempt(
        "verdict_b1_cuda_graph_capture",
        lambda: gm.capture_diagnosis(fm, fm.prepare_detect(images[:1])),
        optional=True,
        needs_s=20,
    )


def eager_attention(fm: ForensicModel, images: list[Any], settings: Settings, run: Run) -> None:
    """SDPA (what load_model asks for) against transformers' eager attention."""
    inputs = fm.prepare_detect(images[:8])
    fm.model.set_attn_implementation("eager")
    try:
        run.data["variants"]["verdict_b8_eager_attention_ms"] = run.attempt(
            "verdict_b8_eager_attention_ms",
            lambda: gm.median_ms(lambda: fm.score_inputs(inputs), settings.device, reps=3),
            optional=True,
        )
    finally:
        fm.model.set_attn_implementation("sdpa")


def explore_small_batch_kernel(
    fm: ForensicModel, images: list[Any], settings: Settings, run: Run
) -> None:
    """Batch-8 graph decoding on the other NF4 small-batch kernel than the one load chose.

    Where the load installed the Triton kernel, this measures bitsandbytes alone; where
    it kept bitsandbytes everywhere, it forces the Triton kernel (if it passes its
    self-check), so both numbers come from this run on this card.
    """
    if fm.kernel_report is None:
        return
    from fakescope.kernels.nf4_dispatch import (
        install_small_batch_kernel,
        uninstall_small_batch_kernel,
    )

    chosen = fm.kernel_report
    other = "bitsandbytes" if chosen.installed_layers else "triton"
    variants = run.data["variants"]
    fm._decoders.clear()  # graphs recorded with the other kernel: capture again
    try:
        forced = install_small_batch_kernel(fm.model, policy=other)
        variants["nf4_kernel_forced"] = forced.to_dict()
        variants[f"decode_b8_graph_decoder_{other}_kernel"] = run.attempt(
            f"decode_b8_graph_decoder_{other}_kernel",
            lambda: gm.decode_through_model(
                fm, images[:8], settings.graph_decode_tokens, settings.device, graph=True
            ),
            optional=True,
            needs_s=20,
        )
    finally:
        uninstall_small_batch_kernel(fm.model)
        fm._decoders.clear()
        fm.kernel_report = install_small_batch_kernel(fm.model, policy=chosen.policy)


def explore_compiled_layers(
    fm: ForensicModel, images: list[Any], settings: Settings, run: Run
) -> None:
    """The shipped verdict path with its decoder layers compiled, against the same path
    with plain layers (and plain-layer graphs), in this run, on this card."""
    if fm.compiled_layers is None:
        return
    device, variants = settings.device, run.data["variants"]
    compiled, graphs = fm.compiled_layers, fm.verdict_graphs
    fm.compiled_layers = None
    if graphs is not None:  # graphs recorded without the compiled layers
        fm.verdict_graphs = VerdictGraphs(fm.model, graphs.prompt_ids, max_batch=graphs.max_batch)
    try:
        for batch in (1, 8, 32):
            inputs = fm.prepare_detect(images[:batch])
            variants[f"verdict_b{batch}_plain_layers_ms"] = run.attempt(
                f"verdict_b{batch}_plain_layers_ms",
                partial(gm.median_ms, partial(fm.score_inputs, inputs), device, reps=3),
                optional=True,
                needs_s=20,
            )
        variants["verdicts_per_s_b32_plain_layers"] = run.attempt(
            "verdicts_per_s_b32_plain_layers",
            lambda: gm.sustained_verdicts_per_s(
                fm.prepare_detect, fm.score_inputs, images[:32], batches=4, device=device
            ),
            optional=True,
            needs_s=20,
        )
    finally:
        fm.compiled_layers, fm.verdict_graphs = compiled, graphs


# -- targets, output ----------------------------------------------------------------------


def judge_targets(data: dict[str, Any]) -> dict[str, Any]:
    """Each issue-7 target: met or not, by how much, and what limits the number."""
    verdicts: dict[str, Any] = {}
    for name, (key, op, threshold) in TARGETS.items():
        value = data.get(key)
        if value is None:
            verdicts[name] = {"measured": None, "met": False, "limit": "not measured"}
            continue
        met = value >= threshold if op == ">=" else value <= threshold
        shortfall = (
            (threshold - value) / threshold if op == ">=" else (value - threshold) / threshold
        )
        verdicts[name] = {
            "measured": round(value, 3),
            "met": met,
            "missed_by_pct": None if met else round(100 * shortfall, 1),
            "limit": _limit(key, data),
        }
    return verdicts


def _limit(key: str, data: dict[str, Any]) -> str:
    """What bounds one number, from the measured breakdown and the card's ceilings."""
    floor = data.get("floors", {})
    if key == "verdict_ms_b1":
        return (
            f"preprocessing {data.get('prepare_ms_b1', float('nan')):.1f} ms (CPU) + forward "
            f"{data.get('forward_ms_b1', float('nan')):.1f} ms ({data.get('verdict_path_b1')}); "
            "arithmetic floor "
            f"{floor.get('verdict_ms_per_image', float('nan')):.1f} ms"
        )
    if key == "verdicts_per_s_b32":
        return (
            f"forward {data.get('forward_per_image_ms_b32', float('nan')):.1f} ms/image against "
            f"an arithmetic floor of {floor.get('verdict_ms_per_image', float('nan')):.1f} "
            f"ms/image; preprocessing {data.get('prepare_ms_b32', float('nan')) / 32:.1f} "
            "ms/image runs on CPU threads beside it"
        )
    batch = 1 if key.endswith("b1") else 8
    per_row = data.get(key, float("nan")) / batch
    kernel = data.get("nf4_kernel") or {}
    on_triton = (
        f" with {kernel['installed_layers']} layers on the Triton NF4 kernel at 2-16 rows"
        if batch > 1 and kernel.get("installed_layers")
        else ""
    )
    return (
        f"path {data.get('decode_path')}{on_triton}: {1000 / per_row:.1f} ms per step; "
        "a step reads every "
        f"weight once: floor {floor.get('decode_ms_per_step', float('nan')):.2f} ms/step "
        f"({floor.get('decode_tok_s_b1_ceiling', float('nan')):.0f} tok/s per row)"
    )


def hardware_ceilings(settings: Settings) -> dict[str, float]:
    """The card's measured bf16 matrix rate and copy bandwidth (empty on the CPU)."""
    if settings.device.type != "cuda":
        return {}
    ceilings = {
        "matmul_tflops": gm.matmul_tflops(settings.device),
        "copy_tb_s": gm.copy_tb_s(settings.device),
    }
    torch.cuda.empty_cache()
    return ceilings


def floors(data: dict[str, Any], ceilings: dict[str, float]) -> dict[str, float]:
    """The floors the card's ceilings put under a verdict and a decode step."""
    if not ceilings:
        return {}
    from llava_7b_checkpoint import IMAGE_TOKENS

    # One verdict: 2 FLOPs per parameter per token (vision tower over 577 patches,
    # language model over the prompt), attention aside.
    vision_params, text_params, prompt_tokens = 0.30e9, 6.74e9, IMAGE_TOKENS + 48
    flops = 2 * (vision_params * (IMAGE_TOKENS + 1) + text_params * prompt_tokens)
    # A decode step reads every weight once; the copy rate counts bytes twice.
    weights = data["memory_gib"].get("weights", 0.0) * gm.GIB
    step_ms = weights / (ceilings["copy_tb_s"] * 1e12 / 2) * 1000
    return {
        **ceilings,
        "verdict_ms_per_image": flops / (ceilings["matmul_tflops"] * 1e12) * 1000,
        "decode_ms_per_step": step_ms,
        "decode_tok_s_b1_ceiling": 1000 / step_ms if step_ms else float("nan"),
    }


def environment(settings: Settings, quant: str, tiny: bool) -> dict[str, Any]:
    import transformers

    try:
        import bitsandbytes

        bnb_version: str | None = bitsandbytes.__version__
    except ImportError:
        bnb_version = None
    gpu = (
        torch.cuda.get_device_name(settings.device)
        if settings.device.type == "cuda"
        else "cpu (tiny checkpoint)"
    )
    return {
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bnb_version,
        "quantization": quant,
        "checkpoint": "tiny" if tiny else "llava-1.5-7b shape, random weights",
        "memory": (
            "GPU memory allocated (torch.cuda.max_memory_allocated)"
            if settings.device.type == "cuda"
            else "peak resident memory of the whole process (no GPU)"
        ),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def write_result(out: Path, record: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in record["gpu"].lower()).strip("-")
    stamp = record["created_at"].replace(":", "").replace("-", "")
    path = out / f"{slug}-{record['quantization']}-{stamp}.json"
    path.write_text(json.dumps(_finite(record), indent=2, sort_keys=True) + "\n")
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: unmeasured numbers are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def table(records: list[dict[str, Any]]) -> str:
    rows = [
        ("verdict latency b1 (ms)", "verdict_ms_b1"),
        ("  forward only b1 (ms)", "forward_ms_b1"),
        ("per image b8 (ms)", "per_image_ms_b8"),
        ("per image b32 (ms)", "per_image_ms_b32"),
        ("verdicts/s b32 sustained", "verdicts_per_s_b32"),
        ("decode tok/s b1", "decode_tok_s_b1"),
        ("decode tok/s b8 (all rows)", "decode_tok_s_b8"),
        ("time to first token b1 (ms)", "ttft_ms_b1"),
        ("peak memory b1 (GiB)", "peak_mem_gib_b1"),
    ]
    head = f"{'':32}" + "".join(f"{r['quantization']:>12}" for r in records)
    lines = [f"{records[0]['gpu']}, torch {records[0]['torch']}", head]
    for label, key in rows:
        cells = "".join(_cell(r.get(key)) for r in records)
        lines.append(f"{label:32}{cells}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:>12.1f}" if isinstance(value, (int, float)) else f"{'-':>12}"


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quantization", choices=["nf4", "bf16", "both"], default="both")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint on the CPU (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--checkpoint", type=Path, help="reuse a checkpoint built by --build-checkpoint"
    )
    parser.add_argument(
        "--build-checkpoint", type=Path, metavar="DIR", help="only build the checkpoint in DIR"
    )
    parser.add_argument(
        "--budget-s", type=float, default=330.0, help="optional experiments stop after this"
    )
    parser.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="compiled decoder layers for verdicts (load_model's compile; auto: on CUDA)",
    )
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --tiny on a CPU")

    started = time.perf_counter()
    if args.build_checkpoint:
        build_checkpoint(args.build_checkpoint, args.tiny)
        print(f"checkpoint built in {time.perf_counter() - started:.0f} s", flush=True)
        return 0
    settings = Settings.for_run(args.tiny, args.budget_s, compile=args.compile)
    quants = ["nf4", "bf16"] if args.quantization == "both" else [args.quantization]
    workdir = None if args.checkpoint else Path(tempfile.mkdtemp(dir=_fast_dir()))
    records = []
    try:
        checkpoint = (
            args.checkpoint
            if workdir is None
            else build_checkpoint(workdir / "checkpoint", args.tiny)
        )
        print(f"checkpoint ready ({time.perf_counter() - started:.0f} s)", flush=True)
        ceilings = hardware_ceilings(settings)
        for quant in quants:
            print(f"[{quant}]", flush=True)
            run = Run(started, settings)
            record: dict[str, Any] = environment(settings, quant, args.tiny)

            def save(run: Run = run, record: dict[str, Any] = record) -> None:
                record.update(run.data)
                record["floors"] = floors(run.data, ceilings)
                record["targets"] = judge_targets(record)
                record["elapsed_s"] = time.perf_counter() - started
                print(f"  wrote {write_result(args.out, record)}", flush=True)

            measure(checkpoint, quant, settings, run, save)
            records.append(record)
            gc.collect()  # the model goes before the next one loads
            if settings.device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(records))
    return 0


def build_checkpoint(path: Path, tiny: bool) -> Path:
    if tiny:
        from fakescope.tiny import build_tiny_checkpoint

        return build_tiny_checkpoint(path)
    from llava_7b_checkpoint import build_llava_7b_checkpoint

    return build_llava_7b_checkpoint(path)


def _fast_dir() -> str | None:
    """RAM-backed /dev/shm when it has room for 14 GB of weights, else the default tmp."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 20 * 1024**3:
        return str(shm)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
