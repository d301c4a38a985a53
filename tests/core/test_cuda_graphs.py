"""The graph-replayed paths compute what the eager ones do, and never ask the host.

A CUDA graph cannot be captured on the CPU, but what it would record can be checked
there: the decode step run eagerly must reproduce ``model.generate`` token for token,
the verdict computation must give the model's logits, and neither may read a device
value on the host (``.item()``, ``bool(tensor)``...), which aborts a capture. That check
is necessary, not sufficient (transformers' whole LLaVA forward passes it and still
fails to capture on an H100): benchmarks/bench_gpu.py is the test on a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
import transformers.utils.import_utils as hf_import_utils
from PIL import Image
from torch.overrides import TorchFunctionMode

from fakescope.cuda_graphs import GraphCaptureError, GraphDecoder, VerdictGraphs, capturing
from fakescope.model import ForensicModel

HOST_READS = {"item", "tolist", "__bool__", "__int__", "__float__", "nonzero", "cpu", "numpy"}


class HostReads(TorchFunctionMode):
    """Records every torch call that copies a device value to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.seen.append(name)
        if name == "__getitem__" and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.seen.append("boolean mask indexing")
        return func(*args, **(kwargs or {}))


@pytest.fixture()
def as_if_capturing() -> Iterator[None]:
    """transformers takes its capture-safe branches, as inside torch.cuda.graph."""
    always = mock.patch.object(hf_import_utils, "is_cuda_stream_capturing", lambda: True)
    with always, capturing():
        yield


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [
        Image.fromarray(rng.integers(0, 255, (40 + 9 * i, 48, 3), dtype=np.uint8))
        for i in range(count)
    ]


PROMPTS = ["Is it fake?", "Explain step by step what looks generated here, and why", "Why?"]


def _inputs(model: ForensicModel, count: int) -> dict[str, torch.Tensor]:
    return model._generation_inputs(model.prepare(_images(count), PROMPTS[:count]))


def test_decoder_reproduces_generate_greedy_tokens_on_a_left_padded_batch(
    tiny_model: ForensicModel,
) -> None:
    inputs = _inputs(tiny_model, 3)
    assert not bool(inputs["attention_mask"].all())  # rows of different lengths
    tokens = 10
    expected = tiny_model.model.generate(
        **inputs, **tiny_model._generation_settings(tokens, tokens, {})
    )[:, inputs["input_ids"].shape[1] :]
    decoder = GraphDecoder(tiny_model.model, batch_size=3, max_cache_len=128, use_graph=False)
    eos = [tiny_model.tokenizer.eos_token_id]
    for _ in range(2):  # a reused decoder (cache reset in place) gives the same answer
        steps = list(
            decoder.decode(inputs, max_new_tokens=tokens, min_new_tokens=tokens, eos_token_ids=eos)
        )
        assert torch.equal(torch.tensor(steps).T, expected)


def test_decoder_stops_once_every_row_has_ended(tiny_model: ForensicModel) -> None:
    inputs = _inputs(tiny_model, 1)
    decoder = GraphDecoder(tiny_model.model, batch_size=1, max_cache_len=128, use_graph=False)
    first = next(iter(decoder.decode(inputs, max_new_tokens=1)))
    # Declaring the first token an end id ends the answer right there...
    assert list(decoder.decode(inputs, max_new_tokens=8, eos_token_ids=first)) == [first]
    # ...unless min_new_tokens forbids it: then that token is banned and 5 steps run.
    steps = list(decoder.decode(inputs, max_new_tokens=5, min_new_tokens=5, eos_token_ids=first))
    assert len(steps) == 5 and first[0] not in [row[0] for row in steps]


def test_decoder_refuses_other_batch_sizes_and_answers_beyond_its_cache(
    tiny_model: ForensicModel,
) -> None:
    decoder = GraphDecoder(tiny_model.model, batch_size=2, max_cache_len=64, use_graph=False)
    with pytest.raises(ValueError, match="batches of 2"):
        next(iter(decoder.decode(_inputs(tiny_model, 1), max_new_tokens=4)))
    with pytest.raises(ValueError, match="exceed the cache"):
        next(iter(decoder.decode(_inputs(tiny_model, 2), max_new_tokens=60)))


def _step_host_reads(model: ForensicModel) -> list[str]:
    inputs = _inputs(model, 2)
    decoder = GraphDecoder(model.model, batch_size=2, max_cache_len=128, use_graph=False)
    next(iter(decoder.decode(inputs, max_new_tokens=4)))  # prefill, outside the graph
    reads = HostReads()
    with torch.inference_mode(), reads:
        decoder._step()
    return reads.seen


@pytest.mark.usefixtures("as_if_capturing")
def test_decode_step_reads_nothing_back_to_the_host(tiny_model: ForensicModel) -> None:
    assert _step_host_reads(tiny_model) == []


def test_host_read_detector_sees_the_reads_of_an_ordinary_forward(
    tiny_model: ForensicModel,
) -> None:
    # Outside a capture transformers checks the image-token count on the host: the
    # detector must see that, or the tests that find no host reads would prove nothing.
    inputs = tiny_model.prepare_detect(_images(2))
    reads = HostReads()
    with torch.inference_mode(), reads:
        tiny_model.model(**inputs, use_cache=False, logits_to_keep=1)
    assert reads.seen


def test_model_answers_through_the_decoder_as_through_generate(
    graph_decoding: ForensicModel,
) -> None:
    images, prompts = _images(3), PROMPTS
    decoded = graph_decoding.generate_batch(images, prompts, max_new_tokens=12, min_new_tokens=6)
    graph_decoding.graph_decoding = False
    generated = graph_decoding.generate_batch(images, prompts, max_new_tokens=12, min_new_tokens=6)
    assert decoded == generated
    assert all(decoded)


def test_model_streams_through_the_decoder_the_text_generate_gives(
    graph_decoding: ForensicModel,
) -> None:
    image = _images(1)[0]
    pieces = list(graph_decoding.stream(image, PROMPTS[1], max_new_tokens=10, min_new_tokens=10))
    graph_decoding.graph_decoding = False
    expected = graph_decoding.generate(image, PROMPTS[1], max_new_tokens=10, min_new_tokens=10)
    assert len(pieces) > 1
    assert "".join(pieces).strip() == expected


def test_model_keeps_one_decoder_per_batch_size_and_grows_its_cache(
    graph_decoding: ForensicModel,
) -> None:
    image = _images(1)[0]
    graph_decoding.generate(image, "Why?", max_new_tokens=2)
    [small] = graph_decoding._decoders.kept()
    graph_decoding.generate(image, "Why?", max_new_tokens=3)
    assert graph_decoding._decoders.kept() == [small]  # reused: same batch size, fits
    graph_decoding.generate(image, "Why?", max_new_tokens=small.max_cache_len)
    [grown] = graph_decoding._decoders.kept()
    assert grown.batch_size == 1 and grown.max_cache_len > small.max_cache_len


def test_detect_inputs_reuse_the_prompt_ids_yet_equal_the_processor_output(
    tiny_model: ForensicModel,
) -> None:
    images = _images(3) * 3  # 9 images: enough for the threaded pixel path
    fast = tiny_model.prepare_detect(images)
    reference = tiny_model._encode(images, [tiny_model._detect_text] * len(images))
    assert tiny_model._detect_ids is not None
    assert set(fast.keys()) == set(reference.keys())
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(fast[key], reference[key]), key
    # Pixels come from pixels.py: the processor's values, up to float rounding.
    torch.testing.assert_close(fast["pixel_values"], reference["pixel_values"], rtol=0, atol=1e-5)


def test_decoder_tells_a_streamer_of_the_prompt_then_of_each_step(
    graph_decoding: ForensicModel,
) -> None:
    seen: list[torch.Tensor] = []
    ended: list[bool] = []

    class Recorder:
        def put(self, value: torch.Tensor) -> None:
            seen.append(value)

        def end(self) -> None:
            ended.append(True)

    graph_decoding.generate_batch(
        _images(2), PROMPTS[:2], max_new_tokens=4, min_new_tokens=4, streamer=Recorder()
    )
    assert seen[0].shape[0] == 2 and seen[0].shape[1] > 4  # the prompt ids
    assert [tuple(step.shape) for step in seen[1:]] == [(2,)] * 4
    assert ended == [True]


def test_verdict_graph_computation_equals_the_model_forward(tiny_model: ForensicModel) -> None:
    inputs = tiny_model.prepare_detect(_images(3))
    assert tiny_model._detect_ids is not None
    graphs = VerdictGraphs(tiny_model.model, tiny_model._detect_ids)
    with torch.inference_mode():
        replayed = graphs.forward(inputs["pixel_values"])
        reference = tiny_model.model(**inputs, use_cache=False).logits[:, -1, :]
    torch.testing.assert_close(replayed, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("as_if_capturing")
def test_verdict_graph_computation_reads_nothing_back_to_the_host(
    tiny_model: ForensicModel,
) -> None:
    inputs = tiny_model.prepare_detect(_images(2))
    assert tiny_model._detect_ids is not None
    graphs = VerdictGraphs(tiny_model.model, tiny_model._detect_ids)
    reads = HostReads()
    with torch.inference_mode(), reads:
        graphs.forward(inputs["pixel_values"])
    assert reads.seen == []


def test_verdict_graphs_are_only_for_the_gpu(tiny_model: ForensicModel) -> None:
    assert tiny_model.verdict_graphs is None  # on the CPU the eager forward scores


def test_decoder_falls_back_to_eager_steps_when_capture_fails(tiny_model: ForensicModel) -> None:
    inputs = _inputs(tiny_model, 2)
    eager = GraphDecoder(tiny_model.model, batch_size=2, max_cache_len=128, use_graph=False)
    expected = list(eager.decode(inputs, max_new_tokens=6, min_new_tokens=6))
    refused = mock.patch("fakescope.cuda_graphs.warm_up", side_effect=RuntimeError("refused"))
    decoder = GraphDecoder(tiny_model.model, batch_size=2, max_cache_len=128, use_graph=True)
    with refused:
        steps = list(decoder.decode(inputs, max_new_tokens=6, min_new_tokens=6))
    assert steps == expected
    assert decoder.use_graph is False


def test_scoring_falls_back_to_the_eager_forward_when_capture_fails(
    tiny_model: ForensicModel,
) -> None:
    images = _images(2)
    expected = tiny_model.score(images)
    failing = mock.Mock(max_batch=8, compiled=None)
    failing.logits.side_effect = GraphCaptureError("refused")
    tiny_model.verdict_graphs = failing
    try:
        assert tiny_model.score(images) == expected
        assert tiny_model.verdict_graphs is None  # not tried again
    finally:
        tiny_model.verdict_graphs = None


def test_graphs_of_compiled_layers_that_fail_are_recaptured_with_plain_layers(
    tiny_model: ForensicModel,
) -> None:
    images = _images(2)
    expected = tiny_model.score(images)
    failing = mock.Mock(max_batch=6, compiled=object())
    failing.logits.side_effect = GraphCaptureError("compiled code does not capture")
    plain = VerdictGraphs(tiny_model.model, tiny_model._detect_ids)  # eager on the CPU
    replayed = mock.Mock(max_batch=6, compiled=None)
    replayed.logits.side_effect = plain.forward
    tiny_model.verdict_graphs = failing
    try:
        with mock.patch("fakescope.model.VerdictGraphs", return_value=replayed) as made:
            assert tiny_model.score(images) == pytest.approx(expected, abs=1e-5)
        made.assert_called_once_with(tiny_model.model, tiny_model._detect_ids, max_batch=6)
        assert tiny_model.verdict_graphs is replayed  # kept for the next verdicts
    finally:
        tiny_model.verdict_graphs = None


# -- multimodal RoPE (Qwen2-VL families): 3-D positions through the same decoder ----------


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ForensicModel:
    from fakescope.loading import load_model
    from fakescope.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param), family=request.param)
    return load_model(str(path), device="cpu", progress=False)


def test_qwen_decoder_reproduces_generate_on_a_left_padded_batch(
    qwen_model: ForensicModel,
) -> None:
    inputs = _inputs(qwen_model, 3)
    assert not bool(inputs["attention_mask"].all())
    tokens = 8
    expected = qwen_model.model.generate(
        **inputs, **qwen_model._generation_settings(tokens, tokens, {})
    )[:, inputs["input_ids"].shape[1] :]
    decoder = GraphDecoder(qwen_model.model, batch_size=3, max_cache_len=128, use_graph=False)
    assert tuple(decoder._positions.shape) == (3, 3, 1)  # (sections, rows, 1)
    for _ in range(2):  # reused: the cache and the positions are reset by the prefill
        steps = list(decoder.decode(inputs, max_new_tokens=tokens, min_new_tokens=tokens))
        assert torch.tensor(steps).T.tolist() == expected.tolist()


def test_qwen_models_answer_through_the_decoder_as_through_generate(
    qwen_model: ForensicModel,
) -> None:
    images = _images(3)
    generated = qwen_model.generate_batch(images, PROMPTS, max_new_tokens=10, min_new_tokens=5)
    qwen_model.graph_decoding = True  # what CUDA gets
    try:
        decoded = qwen_model.generate_batch(images, PROMPTS, max_new_tokens=10, min_new_tokens=5)
        streamed = "".join(qwen_model.stream(images[1], PROMPTS[1], max_new_tokens=10))
    finally:
        qwen_model.graph_decoding = False
    assert decoded == generated
    assert streamed.strip() == generated[1]


@pytest.mark.usefixtures("as_if_capturing")
def test_qwen_decode_step_reads_nothing_back_to_the_host(qwen_model: ForensicModel) -> None:
    assert _step_host_reads(qwen_model) == []
