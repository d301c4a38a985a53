"""Loading and using a ForensicModel on tiny random-weight checkpoints of three families."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import LogitsProcessor, LogitsProcessorList

from fakescope.errors import ModelLoadError, QuantizationError
from fakescope.loading import expected_model_key, load_model
from fakescope.model import ForensicModel, ModelInfo
from fakescope.scoring import p_fake_from_logits
from fakescope.tiny import build_tiny_checkpoint


def sample_images() -> list[Image.Image]:
    """Images of different sizes, aspect ratios, modes and contents."""
    striped = Image.new("RGB", (97, 41), (250, 240, 230))
    draw = ImageDraw.Draw(striped)
    for x in range(0, 97, 6):
        draw.line([(x, 0), (x, 40)], fill=(20, 60, 200), width=2)
    gradient = Image.linear_gradient("L").resize((30, 80)).convert("RGB")
    grey = Image.new("L", (64, 64), 128)
    noise = Image.effect_noise((45, 45), 60).convert("RGB")
    return [striped, gradient, grey, noise]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ForensicModel]:
    """Tiny LLaVA-NeXT and Qwen2(.5)-VL models: image token counts vary with image size."""
    models = {}
    for family in ("llava_next", "qwen2_vl", "qwen2_5_vl"):
        path = build_tiny_checkpoint(tmp_path_factory.mktemp(family) / "ckpt", family=family)
        models[family] = load_model(str(path), device="cpu", progress=False)
    return models


def assert_batch_equals_single(model: ForensicModel) -> None:
    images = sample_images()
    batched = model.score(images)
    single = [model.score([image])[0] for image in images]
    assert batched == pytest.approx(single, abs=1e-4)
    assert all(0.0 < p < 1.0 for p in batched)


# -- scoring ---------------------------------------------------------------------------


def test_batched_p_fake_equals_one_at_a_time_on_llava(tiny_model: ForensicModel) -> None:
    assert_batch_equals_single(tiny_model)


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl", "qwen2_5_vl"])
def test_batched_p_fake_equals_one_at_a_time_with_padding(
    family_models: dict[str, ForensicModel], family: str
) -> None:
    model = family_models[family]
    inputs = model.prepare_detect(sample_images())
    lengths = inputs["attention_mask"].sum(dim=-1)
    assert len(set(lengths.tolist())) > 1, "the batch should need padding"
    assert (inputs["attention_mask"][:, -1] == 1).all(), "left padding: last position is real"
    assert_batch_equals_single(model)


def test_score_is_the_formula_on_the_last_position_of_a_full_forward(
    tiny_model: ForensicModel,
) -> None:
    images = sample_images()
    inputs = tiny_model.prepare_detect(images)
    with torch.inference_mode():
        logits = tiny_model.model(**inputs).logits[:, -1, :]
    expected = p_fake_from_logits(logits, tiny_model.fake_ids, tiny_model.real_ids)
    assert tiny_model.score_inputs(inputs) == pytest.approx(expected.tolist(), abs=1e-5)


def test_scoring_nothing_returns_nothing(tiny_model: ForensicModel) -> None:
    assert tiny_model.score([]) == []


def test_detect_prompt_goes_through_the_chat_template(tiny_model: ForensicModel) -> None:
    text = tiny_model.chat_text("Is it fake?")
    assert text == "USER: <image>\nIs it fake? ASSISTANT:"


# -- model facts -------------------------------------------------------------------------


def test_tiny_model_info_says_untrained(tiny_model: ForensicModel) -> None:
    info = tiny_model.info
    assert info.untrained is True
    assert info.family == "llava"
    assert info.quantization == "none"
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.revision is not None and info.revision.startswith("local-")
    assert info.key == f"{info.id}@{info.revision}:none"
    assert info.to_dict() == {
        "id": info.id,
        "revision": info.revision,
        "quantization": "none",
        "untrained": True,
        "family": "llava",
        "calibration": None,
    }


def test_the_cache_identity_is_known_before_the_weights_load(
    tiny_model: ForensicModel, tiny_model_dir: Path
) -> None:
    """The server serves its cache under this key while a checkpoint loads."""
    assert expected_model_key(str(tiny_model_dir), device="cpu") == tiny_model.info.key
    assert expected_model_key(str(tiny_model_dir), quantization="none") == tiny_model.info.key
    with pytest.raises(QuantizationError):
        expected_model_key(str(tiny_model_dir), quantization="fp3")


def test_revision_of_a_hub_snapshot_is_its_commit_hash(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--x--y" / "snapshots" / commit
    shutil.copytree(tiny_model_dir, snapshot)
    assert load_model(str(snapshot), device="cpu", progress=False).info.revision == commit


def test_revision_of_a_git_clone_is_its_head(tiny_model_dir: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(tiny_model_dir, clone)
    (clone / ".git" / "refs" / "heads").mkdir(parents=True)
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / ".git" / "refs" / "heads" / "main").write_text("feedbeef" * 5 + "\n")
    assert load_model(str(clone), device="cpu", progress=False).info.revision == "feedbeef" * 5


def test_family_of_each_tiny_checkpoint_is_detected(
    family_models: dict[str, ForensicModel],
) -> None:
    assert {name: m.info.family for name, m in family_models.items()} == {
        "llava_next": "llava_next",
        "qwen2_vl": "qwen2_vl",
        "qwen2_5_vl": "qwen2_5_vl",
    }


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_checkpoints_load_without_a_video_processor(
    family_models: dict[str, ForensicModel], family: str
) -> None:
    # The saved files name the stock Qwen processor, as hub checkpoints do; without
    # torchvision its video processor cannot load, and the image-only variant is used.
    processor = family_models[family].processor
    assert not hasattr(processor, "video_processor") or processor.video_processor is None
    assert family_models[family].chat_text("Hi?").endswith("<|im_start|>assistant\n")


# -- quantization ------------------------------------------------------------------------


def linear_types(model: ForensicModel) -> Counter[tuple[str, str]]:
    """(top-level part, layer class) of every linear layer."""
    kinds = ("Linear", "Linear4bit", "Linear8bitLt")
    found: Counter[tuple[str, str]] = Counter()
    for name, module in model.model.named_modules():
        if type(module).__name__ in kinds:
            part = name.split(".")[1] if name.startswith("model.") else name
            found[(part, type(module).__name__)] += 1
    return found


@pytest.mark.parametrize(("mode", "layer"), [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantization_spares_vision_tower_projector_and_lm_head(
    tiny_model_dir: Path, mode: str, layer: str
) -> None:
    model = load_model(str(tiny_model_dir), quantization=mode, device="cpu", progress=False)
    types = linear_types(model)
    parts = {part for part, _ in types}
    assert parts == {"vision_tower", "multi_modal_projector", "language_model", "lm_head"}
    for part in ("vision_tower", "multi_modal_projector", "lm_head"):
        assert {kind for p, kind in types if p == part} == {"Linear"}, part
    assert {kind for p, kind in types if p == "language_model"} == {layer}
    assert model.info.quantization == mode
    assert all(0.0 < p < 1.0 for p in model.score(sample_images()[:2]))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_quantization_spares_the_visual_tower(
    family_models: dict[str, ForensicModel], family: str
) -> None:
    path = family_models[family].info.id
    model = load_model(path, quantization="nf4", device="cpu", progress=False)
    types = linear_types(model)
    assert {kind for p, kind in types if p in {"visual", "lm_head"}} == {"Linear"}
    assert {kind for p, kind in types if p == "language_model"} == {"Linear4bit"}


def test_cpu_default_is_no_quantization_in_float32(tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("the default differs on a CUDA machine")
    info = load_model(str(tiny_model_dir), progress=False).info
    assert (info.quantization, info.device, info.dtype) == ("none", "cpu", "float32")


# -- loading errors and progress -------------------------------------------------------------


def test_missing_directory_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no checkpoint directory"):
        load_model(str(tmp_path / "absent"), progress=False)


def test_directory_without_config_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_model(str(tmp_path), progress=False)


def test_hub_id_not_in_the_offline_cache_is_a_model_load_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_model("fakescope-test/not-a-model", device="cpu", progress=False)


def test_a_text_only_checkpoint_is_a_model_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="processor"):
        load_model(str(tmp_path), device="cpu", progress=False)


def test_unknown_quantization_is_rejected(tiny_model_dir: Path) -> None:
    with pytest.raises(QuantizationError, match="unknown quantization"):
        load_model(str(tiny_model_dir), quantization="fp3", progress=False)


def test_unknown_dtype_and_device_are_rejected(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model(str(tiny_model_dir), dtype="float7", progress=False)
    with pytest.raises(ModelLoadError, match="unknown device"):
        load_model(str(tiny_model_dir), device="abacus", progress=False)


def test_progress_reports_loading_stages_on_stderr(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_model(str(tiny_model_dir), device="cpu", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loading weights" in captured.err
    assert "ready in" in captured.err
    load_model(str(tiny_model_dir), device="cpu", progress=False)
    assert "fakescope:" not in capsys.readouterr().err


# -- generation --------------------------------------------------------------------------


def test_generation_with_min_new_tokens_gives_text(tiny_model: ForensicModel) -> None:
    text = tiny_model.generate(
        sample_images()[0], "Describe it.", max_new_tokens=6, min_new_tokens=6
    )
    assert isinstance(text, str)
    assert text.strip()


def test_stream_pieces_join_to_the_generated_text(tiny_model: ForensicModel) -> None:
    image = sample_images()[1]
    full = tiny_model.generate(image, "Why?", max_new_tokens=10, min_new_tokens=10)
    pieces = list(tiny_model.stream(image, "Why?", max_new_tokens=10, min_new_tokens=10))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == full


def test_stream_reraises_a_generation_failure(tiny_model: ForensicModel) -> None:
    with pytest.raises(ValueError):
        list(tiny_model.stream(sample_images()[0], "Why?", max_new_tokens=4, num_beams=-3))


class CountSteps(LogitsProcessor):
    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return scores


def test_closing_a_stream_early_stops_the_generation(tiny_model: ForensicModel) -> None:
    counter = CountSteps()
    pieces = tiny_model.stream(
        sample_images()[0],
        "Why?",
        max_new_tokens=500,
        min_new_tokens=500,
        logits_processor=LogitsProcessorList([counter]),
    )
    next(pieces)
    pieces.close()  # joins the generation thread
    assert 0 < counter.steps < 500


def test_generate_batch_answers_each_prompt(family_models: dict[str, ForensicModel]) -> None:
    model = family_models["qwen2_vl"]
    images = sample_images()[:3]
    prompts = ["Why?", "What is shown in this image, in detail?", "Colour?"]
    answers = model.generate_batch(images, prompts, max_new_tokens=5, min_new_tokens=5)
    assert len(answers) == 3
    assert all(answer.strip() for answer in answers)


def test_generation_parameters_pass_through(tiny_model: ForensicModel) -> None:
    image = sample_images()[0]
    short = tiny_model.generate(image, "Why?", max_new_tokens=2, min_new_tokens=2)
    same = tiny_model.generate(
        image, "Why?", max_new_tokens=2, min_new_tokens=2, cache_implementation="dynamic"
    )
    assert short == same


def test_model_info_is_frozen() -> None:
    info = ModelInfo("m", None, "none", "cpu", "float32", "llava", untrained=False)
    assert info.key == "m@-:none"
    with pytest.raises(AttributeError):
        info.id = "other"  # type: ignore[misc]


@pytest.mark.gpu
def test_cuda_defaults_to_nf4_and_scores_batches_consistently(tiny_model_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = load_model(str(tiny_model_dir), progress=False)
    assert model.info.quantization == "nf4"
    assert model.info.device.startswith("cuda")
    assert model.info.dtype in {"bfloat16", "float16"}
    types = linear_types(model)
    assert {kind for p, kind in types if p == "language_model"} == {"Linear4bit"}
    assert {kind for p, kind in types if p != "language_model"} == {"Linear"}
    images = sample_images()
    batched = model.score(images)
    single = [model.score([image])[0] for image in images]
    assert batched == pytest.approx(single, abs=2e-2)  # half-precision compute
    text = model.generate(images[0], "Why?", max_new_tokens=8, min_new_tokens=8)
    assert text.strip()
