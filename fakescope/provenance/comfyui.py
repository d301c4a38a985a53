"""ComfyUI graphs (`prompt`: the executed API graph, `workflow`: the editor's graph), in PNG
text chunks or, from ComfyUI's WebP savers, in EXIF IFD0 strings ("prompt:{...}" in Model,
"workflow:{...}" in Make, further keys in the tags below it). Either one is an unsigned but
strong sign of a generated image."""

from __future__ import annotations

import json
from typing import Any

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance.findings import DETAIL_ITEMS, clip, clip_list, metadata_error
from fakescope.provenance.metadata import RawMetadata, exif_text

# Loader inputs that name the generating model (text encoders and VAEs are left out).
MODEL_INPUTS = ("ckpt_name", "unet_name", "model_name", "model_path")
LORA_INPUTS = ("lora_name",)
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")
# SaveAnimatedWEBP: Model (0x0110) holds the prompt, then Make (0x010F) and the tags below it
# hold the extra PNG info keys in order (the workflow first).
EXIF_GRAPH_TAGS = ((0x0110, "Model"), (0x010F, "Make"), (0x010E, "ImageDescription"))
NAME_CHARS = 100


def read_comfyui(meta: RawMetadata) -> list[Evidence]:
    text, source = _graph_texts(meta)
    present = [key for key in ("prompt", "workflow") if key in text]
    if not present:
        return []
    graph = _parse(text.get("prompt", ""))
    workflow = _parse(text.get("workflow", ""))
    api_nodes = _api_nodes(graph)
    ui_nodes = _ui_nodes(workflow)
    if not api_nodes and not ui_nodes:
        problem = "text 'prompt'/'workflow' is not a ComfyUI graph"
        if meta.truncated & set(present):
            problem += " (cut at the size cap)"
        return [metadata_error(source, problem)]
    models, loras = _api_models(api_nodes) if api_nodes else _ui_models(ui_nodes)
    node_types = [_name(n.get("class_type")) for n in api_nodes] or [
        _name(n.get("type")) for n in ui_nodes
    ]
    details: dict[str, Any] = {
        "chunks": present,
        "models": clip_list(models),
        "loras": clip_list(loras),
        "node_count": len(node_types),
        "node_types": clip_list(sorted({t for t in node_types if t})),
        "samplers": clip_list(_samplers(api_nodes)),
    }
    named = f" (models: {clip(', '.join(models), 120)})" if models else ""
    where = "PNG" if source.startswith("png:") else "EXIF"
    return [
        Evidence(
            kind="comfyui_workflow",
            indicates=Indication.FAKE,
            strength=Strength.STRONG,
            summary=f"{where} carries a ComfyUI generation graph{named}.",
            source=source,
            details=details,
        )
    ]


def _graph_texts(meta: RawMetadata) -> tuple[dict[str, str], str]:
    """The graph texts by key, and where they were found."""
    chunks: dict[str, str] = {k: meta.text[k] for k in ("prompt", "workflow") if k in meta.text}
    if chunks:
        return chunks, "png:" + "/".join(chunks)
    found: dict[str, str] = {}
    tags: list[str] = []
    for tag, tag_name in EXIF_GRAPH_TAGS:
        value = exif_text(meta.exif, tag)
        if is_graph_text(value):
            key, _, graph = value.partition(":")
            found.setdefault(key, graph)
            tags.append(tag_name)
    return found, "exif:" + "/".join(tags)


def is_graph_text(value: str) -> bool:
    """Whether an EXIF string is one of ComfyUI's "prompt:{...}" / "workflow:{...}" values."""
    key, colon, graph = value.partition(":")
    return bool(colon) and key in ("prompt", "workflow") and graph.lstrip().startswith("{")


def _name(value: Any) -> str:
    return clip(value, NAME_CHARS) if isinstance(value, str) else ""


def _parse(raw: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def _api_nodes(graph: Any) -> list[dict[str, Any]]:
    if not isinstance(graph, dict):
        return []
    return [n for n in graph.values() if isinstance(n, dict) and "class_type" in n]


def _ui_nodes(workflow: Any) -> list[dict[str, Any]]:
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    if not isinstance(nodes, list):  # any JSON value may stand there ({"nodes": 5})
        return []
    return [n for n in nodes if isinstance(n, dict) and "type" in n]


def _api_models(nodes: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    models: list[str] = []
    loras: list[str] = []
    for node in nodes:
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            continue
        models += [clip(inputs[k], 200) for k in MODEL_INPUTS if isinstance(inputs.get(k), str)]
        loras += [clip(inputs[k], 200) for k in LORA_INPUTS if isinstance(inputs.get(k), str)]
    return list(dict.fromkeys(models)), list(dict.fromkeys(loras))


def _ui_models(nodes: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The editor graph has no input names: take weight files from loader widgets."""
    models: list[str] = []
    loras: list[str] = []
    for node in nodes:
        node_type = _name(node.get("type"))
        if "Loader" not in node_type or "CLIP" in node_type or "VAE" in node_type:
            continue
        widgets = node.get("widgets_values")
        values = widgets if isinstance(widgets, list) else []
        files = [
            clip(v, 200)
            for v in values
            if isinstance(v, str) and v.lower().endswith(_WEIGHT_SUFFIXES)
        ]
        (loras if "Lora" in node_type else models).extend(files)
    return list(dict.fromkeys(models)), list(dict.fromkeys(loras))


def _samplers(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    samplers: list[dict[str, Any]] = []
    for node in nodes:
        inputs = node.get("inputs")
        if "Sampler" not in _name(node.get("class_type")) or not isinstance(inputs, dict):
            continue
        fields = {k: inputs.get(k) for k in ("sampler_name", "scheduler", "steps", "cfg", "seed")}
        scalars = {
            k: clip(v, NAME_CHARS) if isinstance(v, str) else v
            for k, v in fields.items()
            if isinstance(v, str | int | float)
        }
        if scalars:
            samplers.append(scalars)
    return samplers[:DETAIL_ITEMS]
