"""A random-weight checkpoint of LLaVA-1.5-7B's exact shape, built on the spot.

Vision: CLIP ViT-L/14 at 336 px (576 image tokens); projector: two-layer GELU MLP;
language: Llama-2-7B (hidden 4096, 32 layers, 32 heads, MLP 11008, vocabulary 32064).
The tokenizer and chat template come from the tiny checkpoint (a BPE trained on the
spot): its ids are all below the vocabulary size and its label words are single tokens,
which is all the benchmark needs. The weights are random, so the timings are real and
the answers meaningless (``fakescope_untrained`` says so).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

IMAGE_SIZE = 336
PATCH_SIZE = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 576

VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
TEXT: dict[str, Any] = {
    "vocab_size": 32064,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
}


def build_llava_7b_checkpoint(path: Path, *, device: str = "cuda", seed: int = 0) -> Path:
    """Write the checkpoint (safetensors, bfloat16, about 14 GB) to ``path``; return it.

    The weights are initialised on ``device`` (seconds on a GPU) and written in 4 GB
    shards. ``path`` should be on fast local storage.
    """
    from transformers import (
        AutoProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from fakescope.tiny import build_tiny_checkpoint

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="fakescope-tokenizer-"))
    try:
        tiny = AutoProcessor.from_pretrained(build_tiny_checkpoint(tokenizer_dir, seed=seed))
    finally:
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
    tokenizer = tiny.tokenizer
    if len(tokenizer) > TEXT["vocab_size"]:
        raise ValueError("the tiny tokenizer does not fit the 7B vocabulary")

    llava: dict[str, Any] = dict(
        vision_config=CLIPVisionConfig(**VISION),
        text_config=LlamaConfig(
            **TEXT,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(**llava)
    config.fakescope_untrained = True

    torch.manual_seed(seed)
    with torch.device(device):
        model: Any = LlavaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path, max_shard_size="4GB")
    del model

    # LLaVA-1.5's CLIP preprocessing: shortest edge to 336 (bicubic), centre crop 336.
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tiny.chat_template,
    )
    processor.save_pretrained(path)
    return path
