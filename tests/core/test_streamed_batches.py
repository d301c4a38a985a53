"""A batch of streamed answers: each row's pieces arrive as decoded and add up to its answer.

Both answering paths run here: ``model.generate`` (the CPU's default) and the graph
decoder (eagerly on the CPU, as tests/core/test_cuda_graphs.py runs it).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fakescope.answer_pieces import GENERATED_TOKENS, AnswerPieces
from fakescope.model import ForensicModel

PROMPTS = ["Is it fake?", "Explain step by step what looks generated here, and why", "Why?"]


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(11)
    return [
        Image.fromarray(rng.integers(0, 255, (36 + 8 * i, 44, 3), dtype=np.uint8))
        for i in range(count)
    ]


@pytest.fixture(params=["generate", "graph_decoder"])
def model(request: pytest.FixtureRequest, tiny_model: ForensicModel) -> ForensicModel:
    if request.param == "graph_decoder":
        graph_decoding: ForensicModel = request.getfixturevalue("graph_decoding")
        return graph_decoding
    return tiny_model


def test_each_rows_pieces_add_up_to_its_answer(model: ForensicModel) -> None:
    images = _images(3)
    pieces: list[list[str]] = [[], [], []]
    answers = model.generate_batch(
        images,
        PROMPTS,
        max_new_tokens=14,
        min_new_tokens=8,
        on_text=lambda row, piece: pieces[row].append(piece),
    )
    assert all(len(row) >= 2 for row in pieces)  # piece by piece, not all at the end
    assert ["".join(row).strip() for row in pieces] == answers
    # The same answers as without streaming, and as each image asked alone.
    assert answers == model.generate_batch(images, PROMPTS, max_new_tokens=14, min_new_tokens=8)
    alone = [
        model.generate(image, prompt, max_new_tokens=14, min_new_tokens=8)
        for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    assert answers == alone


def test_pieces_come_while_decoding_not_after_it(model: ForensicModel) -> None:
    steps_seen: list[int] = []
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return False

    model.generate_batch(
        _images(2),
        PROMPTS[:2],
        max_new_tokens=10,
        min_new_tokens=10,
        on_text=lambda row, piece: steps_seen.append(asked),
        should_stop=should_stop,
    )
    # Pieces arrive between the step checks: early pieces saw few checks, late ones many.
    assert min(steps_seen) <= 1 and max(steps_seen) >= 8


def test_should_stop_ends_decoding_early_for_every_row(model: ForensicModel) -> None:
    steps = 0

    def stop_after_three() -> bool:
        nonlocal steps
        steps += 1
        return steps >= 3

    full = model.generate_batch(_images(2), PROMPTS[:2], max_new_tokens=20, min_new_tokens=20)
    cut = model.generate_batch(
        _images(2),
        PROMPTS[:2],
        max_new_tokens=20,
        min_new_tokens=20,
        should_stop=stop_after_three,
    )
    assert steps == 3
    for short, whole in zip(cut, full, strict=True):
        assert len(short) < len(whole) and whole.startswith(short)


def test_a_streamer_and_on_text_together_are_refused(tiny_model: ForensicModel) -> None:
    class Streamer:
        def put(self, value: object) -> None: ...

        def end(self) -> None: ...

    with pytest.raises(ValueError, match="on_text or a streamer"):
        tiny_model.generate_batch(
            _images(1),
            PROMPTS[:1],
            max_new_tokens=2,
            on_text=lambda row, piece: None,
            streamer=Streamer(),
        )


def test_pieces_wait_for_a_split_character_and_skip_after_the_end(
    tiny_model: ForensicModel,
) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer.encode(" é ok", add_special_tokens=False)
    eos = tiny_model.eos_ids[0]
    pieces = AnswerPieces(tokenizer, 2, [eos])
    got: list[tuple[int, str]] = []
    for token in ids:
        got += pieces.add([token, eos])  # row 1 ends at once; later ids are padding
    assert all(row == 0 for row, _ in got)
    assert "".join(piece for _, piece in got) == "é ok"  # no half character, no lead space
    assert pieces.ended == [False, True]
    assert pieces.texts() == ["é ok", ""]


def test_a_character_cut_by_the_token_limit_is_flushed_at_the_end(
    tiny_model: ForensicModel,
) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer.encode(" ok 日本", add_special_tokens=False)[:-1]  # 本 cut short
    pieces = AnswerPieces(tokenizer, 1, tiny_model.eos_ids)
    streamed = [piece for token in ids for _, piece in pieces.add([token])]
    assert "".join(streamed) == "ok 日"  # the half character waits
    streamed += [piece for _, piece in pieces.flush()]
    assert "".join(streamed) == pieces.texts()[0] == "ok 日\ufffd"
    assert pieces.flush() == []  # flushed once


def test_every_answering_path_counts_its_answer_tokens(model: ForensicModel) -> None:
    """GENERATED_TOKENS (the server's tokens-per-second metric) counts each answer token once:
    forced to exactly 9 tokens per answer, each path adds 9 per row."""
    images, prompts = _images(3), PROMPTS
    paths = {
        "batch": lambda: model.generate_batch(images, prompts, max_new_tokens=9, min_new_tokens=9),
        "streamed batch": lambda: model.generate_batch(
            images, prompts, max_new_tokens=9, min_new_tokens=9, on_text=lambda row, piece: None
        ),
        "stream": lambda: list(
            model.stream(images[0], prompts[0], max_new_tokens=9, min_new_tokens=9)
        ),
    }
    rows = {"batch": 3, "streamed batch": 3, "stream": 1}
    for name, generate in paths.items():
        before = GENERATED_TOKENS.count
        generate()
        assert GENERATED_TOKENS.count - before == 9 * rows[name], name
