"""Text that generators write into the files they make: Stable Diffusion WebUI parameters
(PNG `parameters`, EXIF UserComment in JPEG/WebP), the JSON that SwarmUI and Fooocus write in
the same places, Midjourney's PNG `Description`, other generators' text chunks, and the
Software / CreatorTool tags of known generators. All unsigned: strong, never decisive."""

from __future__ import annotations

import json
import re
from typing import Any

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance.findings import clip, decode_text
from fakescope.provenance.metadata import RawMetadata, exif_raw, exif_text

EXIF_IFD = 0x8769
TAG_SOFTWARE = 0x0131
TAG_IMAGE_DESCRIPTION = 0x010E
TAG_USER_COMMENT = 0x9286

# PNG text keys other generators write (InvokeAI v1/v2/v3+; Fooocus next to `parameters`).
GENERATOR_TEXT_KEYS = {
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "Dream": "InvokeAI",
    "fooocus_scheme": "Fooocus",
}
# Software names that only generators write. Deliberately narrow: "Adobe Photoshop" or
# "Lightroom" say nothing about generation, and a false "AI" on a photo is the worse error.
KNOWN_GENERATORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("NovelAI", r"\bnovel\s?ai\b"),
        ("Midjourney", r"\bmidjourney\b"),
        ("Adobe Firefly", r"\badobe\s+firefly\b"),
        ("DALL·E", r"\bdall[\W_]?e\b"),
        ("Stable Diffusion", r"\bstable[\s_-]?diffusion\b"),
        ("ComfyUI", r"\bcomfy\s?ui\b"),
        ("InvokeAI", r"\binvoke\s?ai\b"),
        ("Fooocus", r"\bfooocus\b"),
        ("Leonardo.Ai", r"\bleonardo\.?ai\b"),
        ("Bing Image Creator", r"\bbing image creator\b"),
        ("Ideogram", r"\bideogram\b"),
        ("DreamStudio", r"\bdreamstudio\b"),
        ("NightCafe", r"\bnightcafe\b"),
        ("Draw Things", r"\bdraw\s?things\b"),
    )
)
# Midjourney's PNG `Description`: the prompt, then "Job ID: <uuid>".
_MIDJOURNEY_JOB = re.compile(
    r"Job ID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.IGNORECASE
)
_JSON_FIELDS = {
    # SwarmUI `sui_image_params` keys; Fooocus JSON scheme keys.
    "SwarmUI": ("prompt", "negativeprompt", "model", "seed", "steps", "sampler", "swarm_version"),
    "Fooocus": ("prompt", "negative_prompt", "base_model", "seed", "steps", "sampler", "version"),
}
_MAX_JSON_CHARS = 1024 * 1024
_SETTINGS_CHARS = 20_000
_A1111_KEEP = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Model hash", "Version"}


def read_generator_text(meta: RawMetadata, creator_tools: list[str]) -> list[Evidence]:
    """Findings from generator text; `creator_tools` are the XMP CreatorTool values."""
    findings = _png_parameters(meta)
    findings += _exif_parameters(meta)
    findings += _other_generator_chunks(meta)
    findings += _midjourney_description(meta)
    findings += _generator_software(meta, creator_tools)
    return findings


def is_webui_parameters(text: str) -> bool:
    """Stable Diffusion WebUI's last line: "Steps: 20, Sampler: Euler a, CFG scale: 7, ..."."""
    return "Steps:" in text and ("Sampler:" in text or "Seed:" in text)


def parse_webui_parameters(text: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    settings_at = max((i for i, line in enumerate(lines) if "Steps:" in line), default=len(lines))
    prompt_lines = lines[:settings_at]
    negative = [line for line in prompt_lines if line.startswith("Negative prompt:")]
    prompt = "\n".join(line for line in prompt_lines if not line.startswith("Negative prompt:"))
    # Split by hand, not by regex: a crafted megabyte-long line must cost linear time.
    settings: dict[str, str] = {}
    for field in " ".join(lines[settings_at:])[:_SETTINGS_CHARS].split(","):
        key, colon, value = field.partition(":")
        if colon and key.strip() in _A1111_KEEP:
            settings.setdefault(key.strip(), value.strip().strip('"'))
    details: dict[str, Any] = {
        k.lower().replace(" ", "_"): clip(v, 200) for k, v in settings.items()
    }
    details["prompt"] = clip(prompt, 300)
    if negative:
        details["negative_prompt"] = clip(negative[0].removeprefix("Negative prompt:"), 300)
    return details


def parse_json_parameters(text: str) -> tuple[str, dict[str, Any]] | None:
    """(generator, details) for SwarmUI's or Fooocus's JSON parameters; None otherwise."""
    if not text.lstrip().startswith("{") or len(text) > _MAX_JSON_CHARS:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    swarm = data.get("sui_image_params")
    if isinstance(swarm, dict):
        return "SwarmUI", _json_details(swarm, _JSON_FIELDS["SwarmUI"])
    if str(data.get("version", "")).startswith("Fooocus"):
        return "Fooocus", _json_details(data, _JSON_FIELDS["Fooocus"])
    return None


def _json_details(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for key in fields:
        value = data.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            details[key] = clip(str(value), 300)
    return details


def _png_parameters(meta: RawMetadata) -> list[Evidence]:
    finding = _parameters_finding(
        meta.text.get("parameters", ""), "png:parameters", "PNG text chunk"
    )
    return [finding] if finding else []


def _exif_parameters(meta: RawMetadata) -> list[Evidence]:
    # UserComment belongs in the EXIF sub-IFD; Fooocus writes it into IFD0.
    for ifd in (EXIF_IFD, None):
        comment = decode_user_comment(exif_raw(meta.exif, TAG_USER_COMMENT, ifd))
        finding = _parameters_finding(comment, "exif:UserComment", "EXIF UserComment")
        if finding:
            return [finding]
    description = exif_text(meta.exif, TAG_IMAGE_DESCRIPTION)
    finding = _parameters_finding(description, "exif:ImageDescription", "EXIF ImageDescription")
    return [finding] if finding else []


def _parameters_finding(text: str, source: str, where: str) -> Evidence | None:
    if is_webui_parameters(text):
        generator, details = "Stable Diffusion", parse_webui_parameters(text)
    else:
        parsed = parse_json_parameters(text)
        if parsed is None:
            return None
        generator, details = parsed
        details = {"generator": generator, **details}
    model = details.get("model") or details.get("model_hash") or details.get("base_model")
    named = f" (model {model})" if model else ""
    return Evidence(
        kind="generator_parameters",
        indicates=Indication.FAKE,
        strength=Strength.STRONG,
        summary=clip(f"{where} holds {generator} generation parameters{named}.", 200),
        source=source,
        details=details,
    )


def _midjourney_description(meta: RawMetadata) -> list[Evidence]:
    description = meta.text.get("Description", "")
    job = _MIDJOURNEY_JOB.search(description[:20_000])
    if job is None:
        return []
    return [
        Evidence(
            kind="generator_parameters",
            indicates=Indication.FAKE,
            strength=Strength.STRONG,
            summary="PNG text chunk 'Description' holds a Midjourney prompt and job ID.",
            source="png:Description",
            details={
                "generator": "Midjourney",
                "prompt": clip(description[: job.start()], 300),
                "job_id": job.group(1),
                "author": clip(meta.text.get("Author", ""), 100),
            },
        )
    ]


def _other_generator_chunks(meta: RawMetadata) -> list[Evidence]:
    findings: list[Evidence] = []
    for key, generator in GENERATOR_TEXT_KEYS.items():
        if meta.text.get(key, "").strip():
            findings.append(
                Evidence(
                    kind="generator_parameters",
                    indicates=Indication.FAKE,
                    strength=Strength.STRONG,
                    summary=f"PNG text chunk '{key}' holds {generator} generation metadata.",
                    source=f"png:{key}",
                    details={"generator": generator, "excerpt": clip(meta.text[key], 300)},
                )
            )
    return findings


def _generator_software(meta: RawMetadata, creator_tools: list[str]) -> list[Evidence]:
    candidates = [
        ("exif:Software", exif_text(meta.exif, TAG_SOFTWARE)),
        ("png:Software", decode_text(meta.text.get("Software", ""))),
        ("png:Source", decode_text(meta.text.get("Source", ""))),
    ] + [("xmp:CreatorTool", tool) for tool in creator_tools]
    findings: list[Evidence] = []
    for source, value in candidates:
        generator = known_generator(value)
        if generator is None:
            continue
        findings.append(
            Evidence(
                kind="generator_software",
                indicates=Indication.FAKE,
                strength=Strength.STRONG,
                summary=clip(f"{source} names the generator {generator} ({value}).", 200),
                source=source,
                details={"generator": generator, "value": clip(value, 200)},
            )
        )
    return findings


def known_generator(value: str) -> str | None:
    if not value:
        return None
    value = value[:1000]  # names sit at the start; a megabyte value is not searched whole
    return next((name for name, pattern in KNOWN_GENERATORS if pattern.search(value)), None)


def decode_user_comment(raw: bytes | None) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text (EXIF 2.32 §4.6.5)."""
    if not raw:
        return ""
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        return _decode_unicode_comment(body).replace("\x00", "").strip()
    if prefix.startswith((b"ASCII", b"JIS", b"\x00")):
        return decode_text(body)
    return decode_text(raw)


def _decode_unicode_comment(body: bytes) -> str:
    """The text after a "UNICODE" prefix. Writers disagree: WebUI writes UTF-16 big-endian,
    exiftool the EXIF block's own byte order (little-endian in most files), some a byte-order
    mark, a few UTF-8. The byte order shows in where the zero bytes of ASCII characters fall,
    counted over the text, not its first character (a prompt may well start in Japanese)."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body.decode("utf-16", errors="replace")
    sample = body[:4096]
    zeros_first, zeros_second = sample[0::2].count(0), sample[1::2].count(0)
    if zeros_first == zeros_second == 0:
        try:
            return body.decode("utf-8")  # UTF-16 text of any length holds zero bytes
        except UnicodeDecodeError:
            pass
    encoding = "utf-16-le" if zeros_second > zeros_first else "utf-16-be"
    return body.decode(encoding, errors="replace")
