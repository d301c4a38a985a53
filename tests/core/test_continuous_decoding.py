"""Answers that join a running decode between steps are the answers they would be alone.

The tiny checkpoints decode through the graph decoder eagerly on the CPU (what CUDA
replays as a graph). A scheduled inbox offers requests at chosen steps, so each test
knows exactly where a request joins: into which row, at which write index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from fakescope.cuda_graphs import GraphDecoder
from fakescope.joining import AnswerRequest, JoinInbox
from fakescope.model import ForensicModel

SHORT, MEDIUM, LONG = (
    "Why?",
    "Is it fake?",
    "Explain step by step what looks generated here, and why",
)


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (36 + 4 * seed, 44, 3), dtype=np.uint8))


@dataclass
class Asked:
    """A request and what came back to it."""

    image: Image.Image
    prompt: str
    max_new_tokens: int
    min_new_tokens: int = 0
    streamed: bool = False
    pieces: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    unwanted_after: int | None = None  # pieces: the client leaves after this many
    request: AnswerRequest = field(init=False)

    def __post_init__(self) -> None:
        self.request = AnswerRequest(
            self.image,
            self.prompt,
            self.max_new_tokens,
            self.min_new_tokens,
            on_text=self.pieces.append if self.streamed else None,
            wanted=self._wanted,
            finish=self.answers.append,
            fail=self.errors.append,
        )

    def _wanted(self) -> bool:
        return self.unwanted_after is None or len(self.pieces) < self.unwanted_after


class ScheduledInbox(JoinInbox):
    """Offers each scheduled request when the session looks for joiners the n-th time
    (0: before the first step, so a request offered at n joins at the n-th step)."""

    def __init__(self, schedule: dict[int, list[Asked]]) -> None:
        super().__init__()
        self.schedule = schedule
        self.looks = 0

    def waiting(self) -> list[AnswerRequest]:
        for asked in self.schedule.pop(self.looks, []):
            assert self.offer(asked.request)
        self.looks += 1
        return super().waiting()


@pytest.fixture()
def model(graph_decoding: ForensicModel) -> ForensicModel:
    """The tiny model decoding through GraphDecoder (eagerly: there is no GPU here)."""
    return graph_decoding


def alone(model: ForensicModel, asked: Asked) -> str:
    """The answer of the same request decoded on its own."""
    return model.generate(
        asked.image,
        asked.prompt,
        max_new_tokens=asked.max_new_tokens,
        min_new_tokens=asked.min_new_tokens,
    )


def run(
    model: ForensicModel, first: list[Asked], schedule: dict[int, list[Asked]], rows: int
) -> tuple[int, ScheduledInbox]:
    inbox = ScheduledInbox(schedule)
    joined = model.answer_continuously([a.request for a in first], inbox, rows=rows)
    return joined, inbox


def test_joiners_of_other_prompt_lengths_answer_as_they_would_alone(
    model: ForensicModel,
) -> None:
    first = Asked(_image(0), SHORT, 14, 14)
    joiners = {
        2: [Asked(_image(1), LONG, 10, 10)],  # longer than the first prompt: uses the room
        5: [Asked(_image(2), MEDIUM, 12, 12), Asked(_image(3), SHORT, 6, 6)],
    }
    everyone = [first, *(a for group in joiners.values() for a in group)]
    joined, inbox = run(model, [first], dict(joiners), rows=4)
    assert joined == 3 and len(inbox) == 0
    for asked in everyone:
        assert asked.answers == [alone(model, asked)], asked.prompt
    # model.generate (no graph decoder at all) agrees too.
    model.graph_decoding = False
    assert [a.answers[0] for a in everyone] == [alone(model, a) for a in everyone]


def test_a_first_batch_of_several_rows_takes_joiners_too(model: ForensicModel) -> None:
    first = [Asked(_image(4), LONG, 9, 9), Asked(_image(5), SHORT, 12, 12)]
    late = Asked(_image(6), MEDIUM, 8, 8)
    joined, _ = run(model, first, {3: [late]}, rows=3)
    assert joined == 1
    for asked in [*first, late]:
        assert asked.answers == [alone(model, asked)]


def test_rows_freed_by_an_end_id_a_budget_or_a_departed_client_take_joiners(
    model: ForensicModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    ending = Asked(_image(7), MEDIUM, 12)
    full = alone(model, ending)
    steps = list(model._decode(model.prepare([ending.image], [ending.prompt]), 12, 0))
    # Declare the answer's third token an end id: that row ends there, as it would alone.
    monkeypatch.setattr(model, "eos_ids", [*model.eos_ids, steps[2][0]])
    short_budget = Asked(_image(8), SHORT, 3, 3)
    leaving = Asked(_image(9), LONG, 20, 20, streamed=True, unwanted_after=2)
    waiting = [Asked(_image(10), LONG, 8, 8), Asked(_image(11), SHORT, 10, 10)]
    joined, _ = run(model, [ending, short_budget, leaving], {1: waiting}, rows=3)
    assert joined == 2  # both waited for rows to free: none was free at first
    assert ending.answers[0] != full  # it did end early
    for asked in [ending, short_budget, *waiting]:
        assert asked.answers == [alone(model, asked)]
    assert len(leaving.pieces) == 2 and leaving.answers and not leaving.errors


def test_joiners_that_do_not_fit_the_cache_stay_in_the_inbox(model: ForensicModel) -> None:
    first = Asked(_image(12), SHORT, 12, 12)
    too_long_answer = Asked(_image(13), SHORT, 100_000)
    too_long_prompt = Asked(_image(14), " ".join(["why is this region so smooth"] * 60), 4)
    fitting = Asked(_image(15), MEDIUM, 6, 6)
    joined, inbox = run(model, [first], {1: [too_long_answer, too_long_prompt, fitting]}, rows=4)
    assert joined == 1
    assert inbox.closed and not inbox.offer(Asked(_image(16), SHORT, 2).request)
    assert inbox.waiting() == [too_long_answer.request, too_long_prompt.request]
    assert not too_long_answer.answers and not too_long_prompt.answers
    assert not too_long_answer.errors and not too_long_prompt.errors
    for asked in (first, fitting):
        assert asked.answers == [alone(model, asked)]
    # The refused ones answer in a session of their own, as they would alone.
    model.answer_continuously([too_long_prompt.request], JoinInbox(), rows=1)
    assert too_long_prompt.answers == [alone(model, too_long_prompt)]


def test_streamed_pieces_reach_their_own_request_and_add_up_to_its_answer(
    model: ForensicModel,
) -> None:
    first = Asked(_image(17), LONG, 12, 8, streamed=True)
    joiners = [Asked(_image(18), SHORT, 10, 10, streamed=True), Asked(_image(19), MEDIUM, 9)]
    run(model, [first], {2: joiners[:1], 4: joiners[1:]}, rows=2)
    for asked in [first, *joiners]:
        assert asked.answers == [alone(model, asked)]
    for asked in [first, joiners[0]]:
        assert len(asked.pieces) >= 2
        assert "".join(asked.pieces).strip() == asked.answers[0]
    assert joiners[1].pieces == []  # not streamed: no pieces


def test_a_failing_step_fails_every_live_row_and_leaves_waiting_requests(
    model: ForensicModel,
) -> None:
    first = [Asked(_image(20), SHORT, 12, 12), Asked(_image(21), MEDIUM, 12, 12)]
    joiner, waiting = Asked(_image(22), LONG, 8, 8), Asked(_image(23), SHORT, 8, 8)
    real_step = GraphDecoder.step
    steps = 0

    def failing_step(decoder: GraphDecoder) -> list[int]:
        nonlocal steps
        steps += 1
        if steps == 4:
            raise RuntimeError("device lost")
        return real_step(decoder)

    with mock.patch.object(GraphDecoder, "step", autospec=True, side_effect=failing_step):
        joined, inbox = run(model, first, {1: [joiner], 2: [waiting]}, rows=3)
    assert joined == 1  # three rows: the second joiner found none free
    for asked in [*first, joiner]:
        assert [str(e) for e in asked.errors] == ["device lost"] and not asked.answers
    assert inbox.waiting() == [waiting.request] and not waiting.errors


def test_a_failure_before_the_first_step_fails_the_first_requests(model: ForensicModel) -> None:
    first = [Asked(_image(24), SHORT, 4)]
    with mock.patch.object(model, "prepare", side_effect=ValueError("bad image")):
        run(model, first, {}, rows=2)
    assert [str(e) for e in first[0].errors] == ["bad image"]


# -- multimodal RoPE (Qwen2-VL families): 3-D positions for the joiners' rows -------------


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ForensicModel:
    from fakescope.loading import load_model
    from fakescope.tiny import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param), family=request.param)
    loaded = load_model(str(path), device="cpu", progress=False)
    loaded.graph_decoding = True
    return loaded


def test_qwen_joiners_answer_as_they_would_alone(qwen_model: ForensicModel) -> None:
    # Images of different sizes: different image-token counts and 3-D position grids.
    first = Asked(_image(25), SHORT, 10, 10)
    joiners = {1: [Asked(_image(30), LONG, 8, 8)], 4: [Asked(_image(27), MEDIUM, 6, 6)]}
    everyone = [first, *(a for group in joiners.values() for a in group)]
    joined, _ = run(qwen_model, [first], dict(joiners), rows=3)
    assert joined == 2
    for asked in everyone:
        assert asked.answers == [alone(qwen_model, asked)], asked.prompt


def test_a_failure_while_the_first_rows_are_admitted_fails_every_one_of_them(
    model: ForensicModel,
) -> None:
    first = [Asked(_image(26), SHORT, 6, 6, streamed=True), Asked(_image(27), MEDIUM, 6, 6)]

    def broken_client(piece: str) -> None:
        raise ConnectionError("client gone mid-write")

    first[0].request.on_text = broken_client
    run(model, first, {}, rows=2)
    for asked in first:
        assert [str(e) for e in asked.errors] == ["client gone mid-write"] and not asked.answers


def test_a_lone_answer_decodes_in_one_row_and_the_session_grows_as_requests_join(
    model: ForensicModel,
) -> None:
    first = Asked(_image(28), MEDIUM, 12, 12)
    joiners = [Asked(_image(29 + i), SHORT if i % 2 else LONG, 8, 8) for i in range(4)]
    sizes: list[int] = []
    real_step = GraphDecoder.step

    def recording_step(decoder: GraphDecoder) -> list[int]:
        sizes.append(decoder.batch_size)
        return real_step(decoder)

    with mock.patch.object(GraphDecoder, "step", autospec=True, side_effect=recording_step):
        joined, inbox = run(model, [first], {3: joiners[:1], 5: joiners[1:]}, rows=4)
    assert sizes[:3] == [1, 1, 1]  # alone: batch 1
    assert sorted(set(sizes)) == [1, 2, 4]  # then 2 rows, then the limit of 4
    assert joined == 4 and len(inbox) == 0  # the fourth joiner waited for a free row
    for asked in [first, *joiners]:
        assert asked.answers == [alone(model, asked)], asked.prompt


@pytest.mark.parametrize("failures", [1, 2])
def test_without_memory_for_more_rows_the_session_goes_on_at_its_size(
    model: ForensicModel, failures: int
) -> None:
    """An out-of-memory error while growing: the model lets go of the decoders it keeps
    and the session tries again; failing twice, it stays at its size and the joiners take
    the row as it frees. No request fails either way."""
    first = Asked(_image(33), MEDIUM, 10, 10)
    joiners = [Asked(_image(34), SHORT, 6, 6), Asked(_image(35), LONG, 6, 6)]
    real_adopt, real_step = GraphDecoder.adopt, GraphDecoder.step
    adopts = 0
    sizes: list[int] = []

    def short_of_memory(decoder: GraphDecoder, smaller: GraphDecoder) -> None:
        nonlocal adopts
        adopts += 1
        if adopts <= failures:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        real_adopt(decoder, smaller)

    def recording_step(decoder: GraphDecoder) -> list[int]:
        sizes.append(decoder.batch_size)
        return real_step(decoder)

    model._decoders.give_back(model._decoders.take(1, 512))  # kept from an earlier session
    with (
        mock.patch.object(GraphDecoder, "adopt", autospec=True, side_effect=short_of_memory),
        mock.patch.object(GraphDecoder, "step", autospec=True, side_effect=recording_step),
        mock.patch.object(model, "release_decoders", wraps=model.release_decoders) as release,
    ):
        joined, inbox = run(model, [first], {2: joiners}, rows=4)
    assert release.call_count == 1
    assert adopts == (3 if failures == 1 else 2)  # 1 → 2 → 4 rows, or two tries for 2
    assert joined == 2 and len(inbox) == 0
    for asked in [first, *joiners]:
        assert asked.answers == [alone(model, asked)] and not asked.errors
    if failures == 1:  # released, then grew to two rows (and on to four)
        assert max(sizes) > 1
    else:  # stayed at one row: the joiners decoded one after the other in it
        assert set(sizes) == {1}
        # One after the other: each answer's first token comes from its prefill.
        assert len(sizes) >= sum(a.max_new_tokens - 1 for a in [first, *joiners])


@pytest.mark.parametrize("failures", [1, 2])
def test_without_memory_for_the_first_rows_kept_decoders_go_before_anyone_fails(
    model: ForensicModel, failures: int
) -> None:
    """The first prefill allocates the session's cache: out of memory there, the model
    lets go of the decoders it keeps and the session starts again once; only a second
    failure fails the first requests (with the device's error)."""
    first = [Asked(_image(36), SHORT, 6, 6, streamed=True), Asked(_image(37), LONG, 6, 6)]
    real_admit = GraphDecoder.admit
    admits = 0

    def short_of_memory(decoder: GraphDecoder, *args: object, **kwargs: object) -> list[int]:
        nonlocal admits
        admits += 1
        if admits <= failures:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_admit(decoder, *args, **kwargs)  # type: ignore[arg-type]

    with (
        mock.patch.object(GraphDecoder, "admit", autospec=True, side_effect=short_of_memory),
        mock.patch.object(model, "release_decoders", wraps=model.release_decoders) as release,
    ):
        run(model, first, {}, rows=2)
    assert release.call_count == 1
    if failures == 1:
        for asked in first:
            assert asked.answers == [alone(model, asked)] and not asked.errors
        assert "".join(first[0].pieces) == first[0].answers[0]  # streamed once, not twice
    else:
        for asked in first:
            assert not asked.answers and not asked.pieces
            assert [type(e) for e in asked.errors] == [torch.cuda.OutOfMemoryError]


def test_models_with_sliding_window_layers_decode_through_generate() -> None:
    """Rows join by copying into full-length cache layers; a sliding window cannot take
    that, so such a model (a Mistral-based LLaVA-NeXT, say) keeps `generate`."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, MistralConfig

    from fakescope.answering import _has_sliding_cache_layers

    shape = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
    }
    windowed = SimpleNamespace(config=MistralConfig(sliding_window=16, **shape))
    assert _has_sliding_cache_layers(windowed)
    assert not _has_sliding_cache_layers(SimpleNamespace(config=LlamaConfig(**shape)))
