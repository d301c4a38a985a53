"""Tiny random-weight checkpoints, built offline, for tests and demos.

A tiny checkpoint has the real architecture (LLaVA by default; LLaVA-NeXT, Qwen2-VL
and Qwen2.5-VL for tests of those families), a byte-level BPE tokenizer trained on the
spot, a chat template and an image processor, all saved the way hub checkpoints are: it
loads with ``AutoProcessor`` + ``AutoModelForImageTextToText`` like any other. Its
weights are random, so its answers mean nothing; ``config.fakescope_untrained`` says so
and every output made with it is flagged ``untrained``.
"""

from __future__ import annotations

import errno
import json
import random
from pathlib import Path
from typing import Any

from fakescope.prompts import ASPECTS, DETECT_PROMPT, ENHANCE_PROMPT, EXPLAIN_PROMPTS

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl")

# Special tokens as the real checkpoints of each family name them.
LLAVA_SPECIAL_TOKENS: dict[str, Any] = {
    "all": ("<unk>", "<s>", "</s>", "<pad>", "<image>"),
    "named": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "extra": {"image_token": "<image>"},
}
QWEN_SPECIAL_TOKENS: dict[str, Any] = {
    "all": (
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ),
    "named": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "extra": {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
}

LABEL_WORDS = ("fake", "real", "Fake", "Real")

# LLaVA-1.5's template, simplified: images first, then text; ends with "ASSISTANT:".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# Qwen2-VL's template, simplified (no tools, no video).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_VOCABULARY = (
    "the image shows a photo of picture with light shadow texture edge face hand hands "
    "finger fingers eye eyes hair sky tree water building street car dog cat person people "
    "smooth sharp blurry clear natural unnatural lighting reflection perspective symmetry "
    "layout shape theme tone color colour noise artifact artifacts detail details pattern "
    "background foreground object objects skin text letters distorted consistent "
    "inconsistent realistic generated camera lens depth field grain pixel pixels model "
    "diffusion generator evidence because therefore looks seems appears likely and or but "
    "is are was not no yes very too slightly strongly overall local global missing extra "
    "wrong right left top bottom"
)


def _refuse_foreign_folder(path: Path) -> None:
    """Refuse a folder that holds anything but an earlier tiny checkpoint."""
    if not path.is_dir() or not any(path.iterdir()):
        return  # new, empty, or not a folder (mkdir then says what is wrong)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and config.get("fakescope_untrained") is True:
        return  # rebuilding a tiny checkpoint in place
    raise FileExistsError(
        errno.EEXIST,
        "folder is not empty and holds no tiny checkpoint; give a new or empty folder",
        str(path),
    )


def build_tiny_checkpoint(path: Path, *, seed: int = 0, family: str = "llava") -> Path:
    """Write a random-weight checkpoint of about 1 MB to ``path`` and return ``path``.

    Deterministic: the same seed gives the same tokenizer and weights. ``family`` picks
    the architecture: ``llava`` (default), ``llava_next``, ``qwen2_vl`` or ``qwen2_5_vl``.

    ``path`` must be new, empty, or an earlier tiny checkpoint: FileExistsError otherwise,
    so that a mistyped folder never gets a real checkpoint's files overwritten.
    """
    import torch
    from transformers import PreTrainedTokenizerFast

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; expected one of {FAMILIES}")
    path = Path(path)
    _refuse_foreign_folder(path)
    path.mkdir(parents=True, exist_ok=True)

    qwen = family.startswith("qwen")
    special = QWEN_SPECIAL_TOKENS if qwen else LLAVA_SPECIAL_TOKENS
    backend = _train_tokenizer(_corpus(seed), list(special["all"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, **special["named"], extra_special_tokens=special["extra"]
    )
    tokenizer.padding_side = "left"

    torch.manual_seed(seed)
    builders = {
        "llava": _llava,
        "llava_next": _llava_next,
        "qwen2_vl": _qwen2_vl,
        "qwen2_5_vl": _qwen2_5_vl,
    }
    model, processor = builders[family](tokenizer)
    model.config.fakescope_untrained = True
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.bos_token_id is not None:
        model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path)
    processor.save_pretrained(path)
    if qwen:
        stock = "Qwen2VLProcessor" if family == "qwen2_vl" else "Qwen2_5_VLProcessor"
        _record_stock_processor_class(path, stock)
    return path


def _record_stock_processor_class(path: Path, name: str) -> None:
    """Name the stock processor class in the saved files, as hub Qwen checkpoints do.

    The tiny checkpoint is built with the image-only processor (no torchvision here);
    recording the stock class keeps it like a real checkpoint, so loading goes through
    the same fallback a real Qwen2-VL checkpoint needs.
    """
    for file_name in ("processor_config.json", "tokenizer_config.json"):
        file = path / file_name
        if not file.is_file():
            continue
        data = json.loads(file.read_text(encoding="utf-8"))
        if "processor_class" in data:
            data["processor_class"] = name
            file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _corpus(seed: int) -> list[str]:
    """A few hundred lines covering the prompts, the chat markup and the label words."""
    rng = random.Random(seed)
    vocabulary = _VOCABULARY.split()
    prompts = [DETECT_PROMPT, ENHANCE_PROMPT, *EXPLAIN_PROMPTS.values()]
    prompts += [f"How is the {a.replace('_', ' ')} regarding the authenticity?" for a in ASPECTS]
    lines: list[str] = []
    for _ in range(300):
        label = rng.choice(LABEL_WORDS)
        words = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 12)))
        # Label words in every position and case, so BPE learns each as one token.
        lines.append(f"USER: {rng.choice(prompts)} ASSISTANT: {label}. The {words}.")
        lines.append(f"{label} {rng.choice(LABEL_WORDS)}, {words} {rng.choice(LABEL_WORDS)}")
        lines.append(f"user\n{rng.choice(prompts)}\nassistant\n{label}, {words}.")
    return lines


def _train_tokenizer(lines: list[str], special_tokens: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


def _llama_text_config(tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _clip_vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )


def _llava_config(tokenizer: Any) -> dict[str, Any]:
    """What LLaVA and LLaVA-NeXT configs share: the tiny towers and LLaVA-1.5's features."""
    return {
        "vision_config": _clip_vision_config(),
        "text_config": _llama_text_config(tokenizer),
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
        "tie_word_embeddings": False,
    }


def _llava_processor(tokenizer: Any) -> dict[str, Any]:
    """What LLaVA and LLaVA-NeXT processors share, besides the image processor."""
    return {
        "tokenizer": tokenizer,
        "patch_size": 8,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
        "chat_template": LLAVA_CHAT_TEMPLATE,
    }


_LLAVA_IMAGE_SIZE: dict[str, Any] = {
    "size": {"shortest_edge": 32},
    "crop_size": {"height": 32, "width": 32},
}


def _llava(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    config = LlavaConfig(**_llava_config(tokenizer))
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(**_LLAVA_IMAGE_SIZE),
        **_llava_processor(tokenizer),
    )
    return LlavaForConditionalGeneration(config).eval(), processor


def _llava_next(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    pinpoints = [[32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(**_llava_config(tokenizer), image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            **_LLAVA_IMAGE_SIZE, image_grid_pinpoints=pinpoints
        ),
        **_llava_processor(tokenizer),
    )
    return LlavaNextForConditionalGeneration(config).eval(), processor


def _qwen2_vl(tokenizer: Any) -> tuple[Any, Any]:
    return _qwen(tokenizer, "qwen2_vl")


def _qwen2_5_vl(tokenizer: Any) -> tuple[Any, Any]:
    return _qwen(tokenizer, "qwen2_5_vl")


def _qwen(tokenizer: Any, family: str) -> tuple[Any, Any]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from fakescope.loading import ImageOnlyQwen2_5_VLProcessor, ImageOnlyQwen2VLProcessor

    ids = tokenizer.convert_tokens_to_ids
    hidden, heads = 64, 4
    head_dim = hidden // heads
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        # Multimodal RoPE: the three sections split head_dim / 2 rotary frequencies.
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 3, head_dim // 2 - 5],
        },
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    patch = {"patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2}
    special_ids = {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
        "tie_word_embeddings": False,
    }
    model: Any
    config: Any
    if family == "qwen2_vl":
        vision = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2}
        config = Qwen2VLConfig(
            text_config=text_config,
            vision_config={**vision, "mlp_ratio": 2, **patch},
            **special_ids,
        )
        model = Qwen2VLForConditionalGeneration(config)
        processor_class: Any = ImageOnlyQwen2VLProcessor
    else:
        # Qwen2.5-VL's vision tower alternates windowed and full attention blocks.
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2}
        window = {"window_size": 16, "fullatt_block_indexes": [1], "out_hidden_size": hidden}
        config = Qwen2_5_VLConfig(
            text_config=text_config,
            vision_config={**vision, **window, **patch},
            **special_ids,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor_class = ImageOnlyQwen2_5_VLProcessor
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=16 * 16,
        max_pixels=48 * 48,
        patch_size=4,
        merge_size=2,
        temporal_patch_size=2,
    )
    processor = processor_class(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE
    )
    return model.eval(), processor
