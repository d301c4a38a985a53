"""The measurements behind bench_gpu.py: verdicts, decoding, memory, hardware ceilings.

Every timing synchronises the device before reading the clock, warms up first and
reports the median of its repetitions. Each verdict variant changes one thing against
the path ``ForensicModel`` ships, so its effect is measured on its own.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer

from fakescope.cuda_graphs import capturing, warm_up
from fakescope.model import ForensicModel
from fakescope.prompts import EXPLAIN_PROMPTS
from fakescope.scoring import p_fake_from_logits

GIB = 1024**3


def synthetic_images(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Photo-sized RGB images (smooth gradients plus noise): what the processor resizes."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    images = []
    for _ in range(count):
        base = ramp[None, :, None] * rng.uniform(0.2, 1.0, 3) + ramp[:, None, None] * 0.3
        noisy = base + rng.normal(0, 12, (size, size, 3))
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return images


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], device: torch.device, *, reps: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds, the device drained around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since ``reset_peak``; on the CPU, the process's peak RSS."""
    if device.type != "cuda":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return torch.cuda.max_memory_allocated(device) / GIB


# -- hardware ceilings --------------------------------------------------------------------


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """bf16 matrix-product rate on random data (the arithmetic ceiling)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ b, device, reps=reps, warmup=3)
    return 2 * n**3 / (ms / 1000) / 1e12


def copy_tb_s(device: torch.device, gib: float = 2.0, reps: int = 10) -> float:
    """Device-to-device copy rate, bytes read plus written (the bandwidth ceiling)."""
    src = torch.empty(int(gib * GIB), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, reps=reps, warmup=3)
    return 2 * src.numel() / (ms / 1000) / 1e12


# -- verdicts -----------------------------------------------------------------------------


def forward_variant(
    fm: ForensicModel,
    inputs: Any,
    *,
    keep_last: bool = True,
    use_cache: bool = False,
    non_blocking: bool = False,
) -> torch.Tensor:
    """``ForensicModel.score_inputs`` with one of its choices undone or changed."""
    model = fm.model
    with torch.inference_mode():
        batch = {
            key: value.to(
                model.device,
                dtype=model.dtype if value.is_floating_point() else value.dtype,
                non_blocking=non_blocking,
            )
            for key, value in inputs.items()
        }
        mask = batch["attention_mask"]
        batch["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        extra: dict[str, Any] = {"use_cache": use_cache}
        if keep_last:
            extra["logits_to_keep"] = 1
        logits = model(**batch, **extra).logits[:, -1, :]
        return logits.float().cpu()


def p_fake_difference(fm: ForensicModel, images: Sequence[Image.Image]) -> float:
    """Largest |p_fake| difference between the shipped verdict path (CUDA graphs,
    compiled layers, where on) and transformers' plain forward, on the same inputs."""
    inputs = fm.prepare_detect(images)
    shipped = torch.tensor(fm.score_inputs(inputs))
    plain = p_fake_from_logits(forward_variant(fm, inputs), fm.fake_ids, fm.real_ids)
    return float((shipped - plain.double()).abs().max())


def pinned(inputs: Any) -> dict[str, torch.Tensor]:
    """The inputs in page-locked memory (done in preprocessing, off the GPU's path)."""
    return {key: value.pin_memory() for key, value in inputs.items()}


def sustained_verdicts_per_s(
    prepare: Callable[[Sequence[Image.Image]], Any],
    forward: Callable[[Any], Any],
    images: Sequence[Image.Image],
    *,
    batches: int,
    device: torch.device,
) -> float:
    """Verdicts per second when the next batch is preprocessed while this one runs.

    That is how the server runs them: preprocessing on a worker thread, the forward on
    the inference thread.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        forward(prepare(images))  # warm-up
        sync(device)
        started = time.perf_counter()
        pending = pool.submit(prepare, images)
        for index in range(batches):
            inputs = pending.result()
            if index + 1 < batches:
                pending = pool.submit(prepare, images)
            forward(inputs)
        sync(device)
        elapsed = time.perf_counter() - started
    return batches * len(images) / elapsed


# -- decoding -----------------------------------------------------------------------------


class TokenClock(BaseStreamer):
    """Notes the time of each decoding step (transformers calls ``put`` once per step)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt, not a new token
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def decode_rates(
    run: Callable[[TokenClock], None], tokens: int, device: torch.device, *, reps: int
) -> dict[str, float]:
    """Time to first token and steady tokens/s per row of ``run`` (median of ``reps``).

    The rate is timed from the first token to the last, so it excludes the prefill.
    """
    run(TokenClock())  # warm-up (and capture, for graphs)
    ttft, rate = [], []
    for _ in range(reps):
        sync(device)
        clock = TokenClock()
        run(clock)
        if len(clock.times) != tokens:
            raise RuntimeError(f"expected {tokens} steps, timed {len(clock.times)}")
        ttft.append((clock.times[0] - clock.started) * 1000)
        rate.append((tokens - 1) / (clock.times[-1] - clock.times[0]))
    return {"ttft_ms": statistics.median(ttft), "tok_s_per_row": statistics.median(rate)}


def _with_total(rates: dict[str, float], rows: int) -> dict[str, float]:
    return {**rates, "tok_s": rates["tok_s_per_row"] * rows}


EXPLAIN_PROMPT = EXPLAIN_PROMPTS["inference"]


def decode_through_model(
    fm: ForensicModel,
    images: Sequence[Image.Image],
    tokens: int,
    device: torch.device,
    *,
    graph: bool,
) -> dict[str, float]:
    """``ForensicModel.generate_batch`` through the graph decoder or ``model.generate``."""
    prompts = [EXPLAIN_PROMPT] * len(images)
    default = fm.graph_decoding
    fm.graph_decoding = graph

    def run(clock: TokenClock) -> None:
        fm.generate_batch(
            images, prompts, max_new_tokens=tokens, min_new_tokens=tokens, streamer=clock
        )

    try:
        return _with_total(decode_rates(run, tokens, device, reps=2 if graph else 1), len(images))
    finally:
        fm.graph_decoding = default


def joined_decode(
    fm: ForensicModel,
    images: Sequence[Image.Image],
    tokens: int,
    device: torch.device,
    *,
    join_after: int | None = None,
) -> dict[str, Any]:
    """Continuous batching as the server runs it: one answer decodes, a second (another
    prompt, another length) joins after ``join_after`` text pieces of the first (8, or a
    quarter of ``tokens`` when fewer).

    The session runs three times: twice on the decoders' CUDA graphs (the first run
    captures those of 1 and 2 rows) and once with the same decoders eager. The graph runs
    must give the eager run's answers token for token (``matches_eager``): a join must
    keep the captured graphs valid, writing only into their buffers. ``matches_alone``
    compares with each prompt decoded alone; in bf16 a row's values may differ with the
    batch it is in, so random weights can pick another token there without a fault.
    Reports the joiner's time to first token and the session's tokens/s (last graph run).
    """
    from fakescope.joining import AnswerRequest, JoinInbox
    from fakescope.prompts import aspect_prompt

    prompts = (EXPLAIN_PROMPT, aspect_prompt("texture"))
    join_after = join_after or min(8, tokens // 4)  # pieces: a piece may hold a few tokens
    default = fm.graph_decoding
    fm.graph_decoding = True  # the CPU runs the same decoder eagerly (--tiny)

    def session() -> tuple[dict[str, str], float, float | None]:
        inbox = JoinInbox()
        answers: dict[str, str] = {}
        marks: dict[str, float] = {}
        pieces = [0]

        def request(row: int, name: str, on_text: Callable[[str], None]) -> AnswerRequest:
            def finish(text: str) -> None:
                answers[name] = text

            return AnswerRequest(
                images[row], prompts[row], tokens, tokens, on_text=on_text, finish=finish
            )

        def joiner_piece(_piece: str) -> None:
            marks.setdefault("first_piece", time.perf_counter())

        joiner = request(1, "joiner", joiner_piece)

        def first_piece(_piece: str) -> None:
            pieces[0] += 1
            if pieces[0] == join_after:
                marks["offered"] = time.perf_counter()
                inbox.offer(joiner)

        first = request(0, "first", first_piece)
        sync(device)
        began = time.perf_counter()
        fm.answer_continuously([first], inbox, rows=8)
        sync(device)
        elapsed = time.perf_counter() - began
        ttft = None
        if "offered" in marks and "first_piece" in marks:
            ttft = (marks["first_piece"] - marks["offered"]) * 1000.0
        return answers, elapsed, ttft

    try:
        alone = [
            fm.generate_batch([image], [prompt], max_new_tokens=tokens, min_new_tokens=tokens)[0]
            for image, prompt in zip(images[:2], prompts, strict=True)
        ]
        on_graphs = [session(), session()]
        decoders = list(fm._decoders.kept())
        graphs = [decoder.use_graph and decoder._graph is not None for decoder in decoders]
        settings = [decoder.use_graph for decoder in decoders]
        for decoder in decoders:
            decoder.use_graph = False
        try:
            eager, _, _ = session()
        finally:
            for decoder, use_graph in zip(decoders, settings, strict=True):
                decoder.use_graph = use_graph
        answers, elapsed, ttft = on_graphs[-1]
        return {
            "joined": all("joiner" in a for a, _, _ in on_graphs),
            "matches_eager": all(a == eager for a, _, _ in on_graphs),
            "matches_alone": all(
                a.get("first") == alone[0] and a.get("joiner") == alone[1] for a, _, _ in on_graphs
            ),
            "graphs_captured": sum(graphs),
            "joiner_ttft_ms": ttft,
            "session_tok_s": tokens * len(answers) / elapsed if elapsed > 0 else None,
        }
    finally:
        fm.graph_decoding = default


def warm_gpu(fm: ForensicModel, images: Sequence[Image.Image], seconds: float) -> None:
    """Run verdicts until the clocks are up: an idle GPU starts measurements slow."""
    inputs = fm.prepare_detect(images[:8])
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        fm.score_inputs(inputs)


def capture_diagnosis(fm: ForensicModel, inputs: Any) -> dict[str, str | float]:
    """Which part of the detect forward a CUDA graph captures, and its replay time.

    Each part is captured on its own (language model on precomputed embeddings, vision
    tower, the whole forward), so a failure points at the code that breaks capture.
    """
    model = fm.model
    ids = inputs["input_ids"].to(model.device)
    pixels = inputs["pixel_values"].to(model.device, model.dtype)
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(ids)
    parts: dict[str, Callable[[], Any]] = {
        "language_model": lambda: (
            model.model.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        ),
        "vision_tower": lambda: model.model.vision_tower(
            pixels, output_hidden_states=True
        ).hidden_states[-2],
        "whole_forward": lambda: (
            model(input_ids=ids, pixel_values=pixels, use_cache=False, logits_to_keep=1).logits
        ),
    }
    found: dict[str, str | float] = {}
    for name, part in parts.items():
        try:
            with torch.inference_mode(), capturing():
                warm_up(part, 2)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=torch.cuda.graph_pool_handle()):
                    part()
            # Replays run the recorded kernels alone: the part's GPU time at this size.
            found[f"{name}_replay_ms"] = median_ms(graph.replay, model.device, reps=10)
            found[name] = "captured"
        except Exception as exc:  # the error is the finding
            found[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            torch.cuda.synchronize()
    return found
