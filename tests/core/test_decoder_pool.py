"""A model's graph decoders are kept between answers but lent to one decoding at a time."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fakescope.decoder_pool import CACHE_STEP, DecoderPool
from fakescope.model import ForensicModel


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40 + 5 * seed, 48, 3), dtype=np.uint8))


def test_a_lent_decoder_is_nobody_elses_until_given_back(tiny_model: ForensicModel) -> None:
    pool = DecoderPool(tiny_model.model)
    first = pool.take(1, 10)
    second = pool.take(1, 10)  # the first is still lent: a new one
    assert second is not first
    assert first.max_cache_len == CACHE_STEP and len(pool) == 0
    pool.give_back(first)
    assert pool.take(1, 10) is first  # kept, and it fits
    pool.give_back(second)
    assert pool.take(1, CACHE_STEP + 1).max_cache_len == 2 * CACHE_STEP  # too short: new
    assert len(pool) == 0  # the short one is not kept alongside


def test_the_pool_keeps_the_longer_cache_and_a_few_batch_sizes(tiny_model: ForensicModel) -> None:
    pool = DecoderPool(tiny_model.model, max_kept=2)
    short, long = pool.take(2, 10), pool.take(2, CACHE_STEP + 1)
    pool.give_back(long)
    pool.give_back(short)
    assert pool.kept() == [long]
    one, four = pool.take(1, 10), pool.take(4, 10)
    pool.give_back(one)
    pool.give_back(four)  # a third batch size: the oldest (2 rows) goes
    assert pool.kept() == [one, four]
    assert pool.clear() == 2 and pool.kept() == []


def test_streams_read_in_turns_answer_as_each_would_alone(graph_decoding: ForensicModel) -> None:
    # Two answers of one batch size decoding at once: with one shared decoder the second
    # prefill overwrote the first's cache and write index mid-answer.
    asked = [(_image(1), "Explain step by step what looks generated here"), (_image(2), "Why?")]
    alone = [
        "".join(graph_decoding.stream(image, prompt, max_new_tokens=12, min_new_tokens=12))
        for image, prompt in asked
    ]
    streams = [
        graph_decoding.stream(image, prompt, max_new_tokens=12, min_new_tokens=12)
        for image, prompt in asked
    ]
    pieces: list[list[str]] = [[], []]
    ended = [False, False]
    while not all(ended):
        for i, stream in enumerate(streams):
            if not ended[i]:
                piece = next(stream, None)
                ended[i] = piece is None
                if piece is not None:
                    pieces[i].append(piece)
    assert ["".join(p) for p in pieces] == alone
    assert len(graph_decoding._decoders.kept()) == 1  # both given back: one kept for later


def test_a_new_cache_is_made_room_for_before_it_is_allocated(tiny_model: ForensicModel) -> None:
    pool = DecoderPool(tiny_model.model, max_kept=2)
    one, two = pool.take(1, 10), pool.take(2, 10)
    pool.give_back(one)
    pool.give_back(two)
    four = pool.take(4, 10)  # a third batch size: the oldest kept goes before it is built
    assert pool.kept() == [two]
    pool.give_back(four)
    assert pool.kept() == [two, four]


def test_a_decoder_lent_before_a_release_is_not_kept_when_it_comes_back(
    tiny_model: ForensicModel,
) -> None:
    # A continuous session grows (2 -> 4 rows), runs short of memory, the model releases its
    # kept decoders and the retry succeeds: the smaller decoder it then gives back must not
    # hold its cache again, or the next grow runs short once more.
    pool = DecoderPool(tiny_model.model)
    smaller = pool.take(2, 10)
    assert pool.clear() == 0
    bigger = pool.take(4, 10)
    pool.give_back(smaller)
    assert pool.kept() == []
    pool.give_back(bigger)  # lent after the release: kept
    assert pool.kept() == [bigger]
