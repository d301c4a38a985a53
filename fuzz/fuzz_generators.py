"""The text readers (comfyui.py, generators.py): ComfyUI graphs, WebUI / SwarmUI / Fooocus
parameters, Midjourney descriptions, generator names. They never raise, and their findings
serialise as strict JSON. Input: one selector byte (where the text goes), then the text."""

from __future__ import annotations

import json

from fuzz.harness import instrumented, main

with instrumented():
    from PIL import Image

    from fakescope.provenance.comfyui import read_comfyui
    from fakescope.provenance.generators import read_generator_text
    from fakescope.provenance.metadata import RawMetadata

ALLOWED: tuple[type[BaseException], ...] = ()
TEXT_KEYS = ("prompt", "workflow", "parameters", "Description", "invokeai_metadata", "Software")
EXIF_TAGS = ((0x0110, "prompt:"), (0x010F, "workflow:"), (0x010E, ""), (0x0131, ""))


def metadata(data: bytes) -> RawMetadata:
    selector, text = (data[0] if data else 0), data[1:].decode("utf-8", errors="replace")
    meta = RawMetadata(format="PNG")
    if selector & 0x80:
        exif = Image.Exif()
        tag, prefix = EXIF_TAGS[selector % len(EXIF_TAGS)]
        exif[tag] = prefix + text
        if selector & 0x40:
            exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
        meta.exif = exif
    else:
        meta.text[TEXT_KEYS[selector % len(TEXT_KEYS)]] = text
        if selector & 0x40:
            meta.text["workflow"] = text
    return meta


def target(data: bytes) -> None:
    meta = metadata(data)
    findings = read_comfyui(meta) + read_generator_text(meta, [meta.text.get("Software", "")])
    for finding in findings:
        json.dumps(finding.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")


if __name__ == "__main__":
    main(target, ALLOWED, "generators")
