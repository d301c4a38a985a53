"""Loading a checkpoint: processor, weights, quantization, device and dtype.

Any image-text-to-text checkpoint that transformers loads natively works
(``AutoModelForImageTextToText`` + ``AutoProcessor``): LLaVA-1.5, LLaVA-NeXT, Qwen2-VL,
Qwen2.5-VL and others. Quantization (bitsandbytes) applies to the language model only:
the vision tower, the projector and ``lm_head`` stay in full precision, named by full
module path because transformers 5 matches skip lists from the start of a path (a bare
``"vision_tower"`` would silently quantize the vision tower).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    BitsAndBytesConfig,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
)

from fakescope.compiled_layers import resolve_compile
from fakescope.errors import ModelLoadError, QuantizationError
from fakescope.kernels.nf4_dispatch import POLICIES as KERNEL_POLICIES
from fakescope.kernels.nf4_dispatch import install_small_batch_kernel
from fakescope.model import ForensicModel, ModelInfo, model_key

if TYPE_CHECKING:
    from fakescope.calibration import Calibration

QUANTIZATIONS = ("nf4", "int8", "none")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}

# Modules kept out of quantization, as full paths from the top of the model.
UNQUANTIZED_MODULES: dict[str, list[str]] = {
    "llava": ["model.vision_tower", "model.multi_modal_projector", "lm_head"],
    "llava_next": ["model.vision_tower", "model.multi_modal_projector", "lm_head"],
    "llava_onevision": ["model.vision_tower", "model.multi_modal_projector", "lm_head"],
    "qwen2_vl": ["model.visual", "lm_head"],
    "qwen2_5_vl": ["model.visual", "lm_head"],
}
_QWEN_PROCESSOR_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
_SNAPSHOT = re.compile(r"[/\\]snapshots[/\\]([0-9a-f]{40})(?:[/\\]|$)")


def load_model(
    model: str,
    *,
    quantization: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    compile: str | None = None,
    nf4_kernel: str | None = None,
    progress: bool = True,
    calibration: Calibration | None = None,
) -> ForensicModel:
    """Load a checkpoint (local directory or hub id) as a ForensicModel.

    Defaults: the first CUDA device if there is one, else the CPU; NF4 on CUDA and no
    quantization on the CPU; bfloat16 (float16 on older GPUs) on CUDA, float32 on CPU;
    ``compile`` ``auto``: the verdict forward's decoder layers compiled on CUDA only
    (see compiled_layers.py; ``on`` / ``off`` force it); ``nf4_kernel`` ``auto``: on
    CUDA with NF4, decode steps of 2 to 16 rows take the Triton kernel of
    kernels/nf4_matmul.py for each weight shape where it checks out and times faster than
    bitsandbytes (``triton`` / ``bitsandbytes`` force one; the outcome is in
    ``ForensicModel.kernel_report``). ``calibration``: every p_fake the model gives is
    calibrated with it, and its key says so (``+cal-<digest>``); it must have been fitted for
    this checkpoint, revision and quantization, else CalibrationError before any weight loads.
    Raises ModelLoadError (missing or unrecognised checkpoint, bad device or dtype) and
    QuantizationError (unknown mode, or bitsandbytes unavailable).
    """
    started = time.perf_counter()
    say = _stage_printer(progress)
    target = _resolve_device(device)
    quant = _resolve_quantization(quantization, target)
    torch_dtype = _resolve_dtype(dtype, target)
    try:
        compile_layers = resolve_compile(compile, target, quant)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    kernel_policy = (nf4_kernel or "auto").strip().lower()
    if kernel_policy not in KERNEL_POLICIES:
        raise ModelLoadError(
            f"unknown NF4 kernel policy {nf4_kernel!r}; "
            f"expected one of {', '.join(KERNEL_POLICIES)}"
        )
    _check_source(model)
    if calibration is not None:
        calibration.check_model(model_key(model, _revision(model), quant))

    with _progress_bars(progress):
        say(f"loading config of {model}")
        config = _load_config(model)
        family = str(config.model_type)
        say(f"loading processor ({family})")
        processor = _load_processor(model, family)
        say(f"loading weights on {target} ({quant}, {_dtype_name(torch_dtype)})")
        weights = _load_weights(model, config, family, quant, target, torch_dtype)

    info = ModelInfo(
        id=model,
        revision=_revision(model),
        quantization=quant,
        device=str(target),
        dtype=_dtype_name(torch_dtype),
        family=family,
        untrained=bool(getattr(config, "fakescope_untrained", False)),
        calibration=calibration,
    )
    try:
        forensic = ForensicModel(weights, processor, info, compile_layers=compile_layers)
    except _template_errors() as exc:  # the checkpoint's chat template is broken
        raise ModelLoadError(f"the chat template of {model} does not render: {exc}") from exc
    if quant == "nf4" and target.type == "cuda":
        say(f"choosing the small-batch NF4 kernels ({kernel_policy})")
        report = install_small_batch_kernel(weights, policy=kernel_policy)
        forensic.kernel_report = report
        say(f"{report.installed_layers} layers on the Triton NF4 kernel for 2-16 rows")
    say(f"ready in {time.perf_counter() - started:.1f} s" + (" (untrained)" * info.untrained))
    return forensic


# -- choices ------------------------------------------------------------------------------


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {device!r}") from exc
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available")
        if target.index is None:
            target = torch.device("cuda", torch.cuda.current_device())
    return target


def _resolve_quantization(quantization: str | None, device: torch.device) -> str:
    if quantization is None:
        return "nf4" if device.type == "cuda" else "none"
    quant = quantization.strip().lower()
    if quant not in QUANTIZATIONS:
        raise QuantizationError(
            f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}"
        )
    if quant != "none":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise QuantizationError(f"{quant} needs bitsandbytes, which is not installed") from exc
    return quant


def _resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def unquantized_modules(family: str, config: Any) -> list[str]:
    """Full module paths kept out of quantization: everything but the language model."""
    if family in UNQUANTIZED_MODULES:
        return list(UNQUANTIZED_MODULES[family])
    # Unknown family: build it on the meta device (no memory) and keep every top-level
    # part of the inner model except the language model.
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    inner = getattr(skeleton, "model", None)
    if inner is None:
        return ["lm_head"]
    parts = [f"model.{name}" for name, _ in inner.named_children() if name != "language_model"]
    return [*parts, "lm_head"]


def quantization_config(
    quant: str, family: str, config: Any, compute_dtype: torch.dtype
) -> BitsAndBytesConfig | None:
    """The bitsandbytes settings of one mode, vision tower and projector excluded."""
    if quant == "none":
        return None
    skip = unquantized_modules(family, config)
    if quant == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


# -- loading ------------------------------------------------------------------------------


def _check_source(model: str) -> None:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{model} is a directory without config.json: not a checkpoint")
        return
    if path.exists():  # a file, a pipe: what it is says more than "no checkpoint directory"
        raise ModelLoadError(_not_a_checkpoint_folder(model, path))
    # A hub id is "name" or "owner/name"; anything else that does not exist is a bad path.
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if looks_like_path:
        raise ModelLoadError(f"no checkpoint directory at {model}")


def _not_a_checkpoint_folder(model: str, path: Path) -> str:
    what = "a file" if path.is_file() else "neither a folder nor a file (a pipe, a device?)"
    text = (
        f"{model} is {what}, not a checkpoint: a checkpoint is a folder holding config.json "
        "and the weights"
    )
    if (path.parent / "config.json").is_file():  # --model ckpt/model.safetensors
        text += f"; give the folder it is in, {path.parent}"
    return text


def _offline_hint(model: str) -> str:
    if Path(model).expanduser().is_dir():  # a local checkpoint: the hub has nothing to do with it
        return ""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return " (HF_HUB_OFFLINE is set: only checkpoints already in the local cache load)" * offline


def _load_config(model: str) -> Any:
    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load the config of {model}: {exc}{_offline_hint(model)}"
        ) from exc


def _load_processor(model: str, family: str) -> Any:
    processor = _load_any_processor(model, family)
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise ModelLoadError(f"{model} has no image-text processor: not an image-text checkpoint")
    return processor


def _load_any_processor(model: str, family: str) -> Any:
    try:
        return AutoProcessor.from_pretrained(model)
    except (ImportError, OSError, ValueError, TypeError, AttributeError) as exc:
        if family not in _QWEN_PROCESSOR_FAMILIES:
            raise ModelLoadError(f"cannot load the processor of {model}: {exc}") from exc
        # Qwen processors insist on a video processor, which needs torchvision; the
        # image-only variants skip it (FakeScope never sends video).
        image_only = (
            ImageOnlyQwen2VLProcessor if family == "qwen2_vl" else ImageOnlyQwen2_5_VLProcessor
        )
        try:
            return image_only.from_pretrained(model)
        except (ImportError, OSError, ValueError, TypeError) as inner:
            raise ModelLoadError(f"cannot load the processor of {model}: {inner}") from exc


def _load_weights(
    model: str,
    config: Any,
    family: str,
    quant: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Any:
    if quant == "int8":
        _silence_int8_cast_warning()
    settings: dict[str, Any] = {
        "dtype": dtype,
        "quantization_config": quantization_config(quant, family, config, dtype),
        "device_map": {"": device},
    }
    try:
        try:
            # PyTorch's fused attention: fast everywhere, no extra package needed.
            weights = AutoModelForImageTextToText.from_pretrained(
                model, attn_implementation="sdpa", **settings
            )
        except ValueError as exc:
            if "sdpa" not in str(exc).lower():
                raise
            # An architecture without SDPA support: let transformers pick its default.
            weights = AutoModelForImageTextToText.from_pretrained(model, **settings)
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        # SafetensorError: a weights file cut short (an interrupted download) or not one at all.
        raise ModelLoadError(
            f"cannot load the weights of {model}: {exc}{_offline_hint(model)}"
        ) from exc
    return weights.eval()


def _template_errors() -> tuple[type[Exception], ...]:
    """What a chat template that does not parse or render raises (jinja2 renders them)."""
    try:
        from jinja2 import TemplateError
    except ImportError:  # without jinja2, transformers says so itself (an ImportError)
        return ()
    return (TemplateError,)


class _DropInt8CastWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _silence_int8_cast_warning() -> None:
    # bitsandbytes logs this on every int8 matmul whose input is not float16 (on the CPU:
    # every one); it says nothing the quantization choice did not already say.
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastWarning) for f in bnb_logger.filters):
        bnb_logger.addFilter(_DropInt8CastWarning())


def expected_model_key(
    model: str,
    *,
    quantization: str | None = None,
    device: str | None = None,
    calibration: Calibration | None = None,
) -> str:
    """The `ModelInfo.key` that `load_model` with these arguments will give, read from the
    checkpoint's files without loading its weights (seconds before a load of minutes).
    Raises what `load_model` raises for a bad device, quantization or calibration."""
    quant = _resolve_quantization(quantization, _resolve_device(device))
    base = model_key(model, _revision(model), quant)
    if calibration is None:
        return base
    calibration.check_model(base)
    return calibration.key_of(base)


def _revision(model: str) -> str | None:
    """The commit of the weights: hub snapshot hash, git HEAD of a local clone, or a digest."""
    path = Path(model).expanduser()
    where = str(path.resolve()) if path.is_dir() else _cached_config_path(model)
    if where is None:
        return None
    found = _SNAPSHOT.search(where)
    if found:
        return found.group(1)
    if path.is_dir():
        return _git_head(path) or _content_digest(path)
    return None


def _cached_config_path(model: str) -> str | None:
    """Where the hub cache holds this id's config.json (no network access)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        resolved = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return resolved if isinstance(resolved, str) else None


def _git_head(path: Path) -> str | None:
    head = path / ".git" / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text(encoding="utf-8").strip()
    if not ref.startswith("ref: "):
        return ref or None
    target = path / ".git" / ref.removeprefix("ref: ")
    return target.read_text(encoding="utf-8").strip() if target.is_file() else None


def _content_digest(path: Path) -> str:
    """A short digest of config.json and the names and sizes of the weight files."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for file in sorted(path.iterdir()):
        if file.suffix in {".safetensors", ".bin", ".pt", ".gguf"}:
            digest.update(f"{file.name}:{file.stat().st_size}\n".encode())
    return "local-" + digest.hexdigest()[:12]


# -- progress -----------------------------------------------------------------------------


def _stage_printer(progress: bool) -> Any:
    def say(message: str) -> None:
        if progress:
            print(f"fakescope: {message}", file=sys.stderr, flush=True)

    return say


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Show (or hide) transformers' and the hub's progress bars for one load."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    hub_was_disabled = are_progress_bars_disabled()
    hf_was_enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        enable_progress_bars()
        hf_logging.enable_progress_bar()
    else:
        disable_progress_bars()
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hub_was_disabled:
            disable_progress_bars()
        else:
            enable_progress_bars()
        if hf_was_enabled:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()


# -- image-only Qwen processors -----------------------------------------------------------


class _WithoutVideoProcessor:
    """The Qwen processors' __init__ minus the video processor (which requires torchvision)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        _set_qwen_tokens(self, tokenizer)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)  # type: ignore[arg-type]


class ImageOnlyQwen2VLProcessor(_WithoutVideoProcessor, Qwen2VLProcessor):
    """Qwen2-VL's processor without the video processor (which requires torchvision)."""


class ImageOnlyQwen2_5_VLProcessor(_WithoutVideoProcessor, Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor (which requires torchvision)."""


def _set_qwen_tokens(processor: Any, tokenizer: Any) -> None:
    # Same attributes the Qwen processors set before ProcessorMixin.__init__.
    processor.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    processor.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
