"""Seed corpora for the harnesses: small synthetic files that carry every kind of metadata
the readers look for (built here, with the tests' own builders), and the smallest real
images of each format from ../shared/data when it is there.

`python -m fuzz.make_seeds` writes them to fuzz/corpus/<harness>/ (ignored by git).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

from fakescope.images import enable_heif
from fuzz.harness import FUZZ_DIR, ROOT

sys.path.insert(0, str(ROOT / "tests" / "core"))  # the tests' builders, imported as they are
import hostile_images as hi

SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"
REAL_PER_FORMAT = 12
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

COMFY_PROMPT = json.dumps(
    {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": 1, "steps": 20, "cfg": 7.5, "sampler_name": "euler"},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl.safetensors"}},
        "5": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors"}},
    }
)
COMFY_WORKFLOW = json.dumps(
    {"nodes": [{"type": "CheckpointLoaderSimple", "widgets_values": ["flux1-dev.safetensors"]}]}
)
WEBUI = (
    "a cat in a hat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
    "Seed: 42, Size: 512x512, Model hash: abc123, Model: sd15"
)
SWARM = json.dumps({"sui_image_params": {"prompt": "a dog", "model": "sdxl", "seed": 3}})
FOOOCUS = json.dumps({"version": "Fooocus v2.5", "prompt": "a bird", "base_model": "juggernaut"})
MIDJOURNEY = "a castle --ar 16:9 Job ID: 0123abcd-0123-4567-89ab-0123456789ab"


def xmp_packets() -> dict[str, bytes]:
    return {
        "xmp_dst_attr": hi.xmp_digital_source_type("trainedAlgorithmicMedia").encode(),
        "xmp_dst_elem": hi.xmp_digital_source_type("digitalCapture", False).encode(),
        "xmp_tool": hi.xmp_packet(
            '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
            "<xmp:CreatorTool>Adobe Firefly</xmp:CreatorTool>"
            '<dcterms:provenance xmlns:dcterms="http://purl.org/dc/terms/">'
            "https://example.com/m.c2pa</dcterms:provenance></rdf:Description>"
        ).encode(),
        "xmp_utf16": hi.xmp_digital_source_type("compositeSynthetic").encode("utf-16"),
        "xmp_laughs": hi.billion_laughs_xmp().encode(),
    }


def _exif(tags: dict[int, object], sub: dict[int, object] | None = None) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if sub:
        exif.get_ifd(0x8769).update(sub)
    return exif.tobytes()


def exif_blocks() -> dict[str, bytes]:
    return {
        "camera": _exif(
            {0x010F: "Canon", 0x0110: "EOS R5", 0x0131: "Lightroom", 0x0112: 6},
            {0x9003: "2024:01:01 10:00:00", 0xA434: "RF 50mm"},
        ),
        "comfy_webp": _exif(
            {0x0110: "prompt:" + COMFY_PROMPT, 0x010F: "workflow:" + COMFY_WORKFLOW}
        ),
        "user_comment": _exif(
            {0x0131: "NovelAI"}, {0x9286: b"UNICODE\x00" + WEBUI.encode("utf-16-be")}
        ),
        "ifd_loop": hi.exif_ifd_loop(),
        "entry_bomb": hi.exif_entry_bomb(40, b"x" * 64),
    }


def png_seeds() -> dict[str, bytes]:
    base = hi.encode(hi.scene(16, 12), "PNG")
    exif = exif_blocks()["camera"]
    xmp = xmp_packets()["xmp_dst_attr"].decode()
    return {
        "png_plain": base,
        "png_params": hi.png_with_chunks(base, hi.text_chunk("parameters", WEBUI)),
        "png_comfy": hi.png_with_chunks(
            base,
            hi.itxt_chunk("prompt", COMFY_PROMPT),
            hi.ztxt_chunk("workflow", zlib.compress(COMFY_WORKFLOW.encode())),
        ),
        "png_swarm": hi.png_with_chunks(base, hi.text_chunk("parameters", SWARM)),
        "png_fooocus": hi.png_with_chunks(base, hi.text_chunk("fooocus_scheme", FOOOCUS)),
        "png_mj": hi.png_with_chunks(
            base, hi.text_chunk("Description", MIDJOURNEY), hi.text_chunk("Software", "Midjourney")
        ),
        "png_xmp_exif": hi.png_with_chunks(
            base, hi.itxt_chunk("XML:com.adobe.xmp", xmp), hi.png_chunk(b"eXIf", exif)
        ),
        "png_16bit": hi.png_16bit_grey(4, 4, 40000),
        "png_header_only": hi.png_header_only(300, 200),
    }


def jpeg_seeds() -> dict[str, bytes]:
    xmp = xmp_packets()["xmp_tool"]
    return {
        "jpeg_camera": hi.encode(hi.scene(16, 12), "JPEG", exif=exif_blocks()["camera"]),
        "jpeg_comment": hi.encode(hi.scene(16, 12), "JPEG", exif=exif_blocks()["user_comment"]),
        "jpeg_xmp": hi.jpeg_with_raw_app1(b"http://ns.adobe.com/xap/1.0/\x00" + xmp),
        "jpeg_progressive": hi.encode(hi.scene(16, 12), "JPEG", progressive=True),
        "jpeg_cmyk": hi.cmyk_jpeg(),
        "jpeg_loop": hi.jpeg_with_raw_app1(b"Exif\x00\x00" + hi.exif_ifd_loop()),
    }


def other_seeds() -> dict[str, bytes]:
    enable_heif()  # HEIF is saved by pillow-heif's plugin; Pillow writes AVIF itself
    small = hi.scene(16, 12)
    return {
        "webp_comfy": hi.encode(small, "WEBP", exif=exif_blocks()["comfy_webp"]),
        "webp_xmp": hi.encode(small, "WEBP", xmp=xmp_packets()["xmp_dst_attr"]),
        "tiff": hi.encode(small, "TIFF", exif=exif_blocks()["camera"]),
        "gif": hi.gif_with(b"!\xff\x0bXMP DataXMPjumb\x00"),
        "gif_anim": hi.animated("GIF", [(255, 0, 0), (0, 0, 255)]),
        "bmp": hi.encode(small, "BMP"),
        "heif": hi.encode(small, "HEIF", exif=exif_blocks()["camera"]),
        "avif": hi.encode(small, "AVIF"),
        "bigtiff": b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 16) + struct.pack("<Q", 0),
    }


def c2pa_seeds() -> dict[str, bytes]:
    """Signed files (the SDK's JUMBF parser is the largest surface); none if it cannot sign."""
    try:
        import c2pa_signing as cs
    except ImportError:
        return {}
    manifest = cs.manifest_with_actions(cs.created("trainedAlgorithmicMedia"))
    jpeg = hi.encode(hi.scene(16, 12), "JPEG")
    png = hi.encode(hi.scene(16, 12), "PNG")
    return {
        "c2pa_jpeg": cs.sign(jpeg, "JPEG", manifest),
        "c2pa_png": cs.sign(png, "PNG", manifest),
    }


def image_seeds() -> dict[str, bytes]:
    return {**png_seeds(), **jpeg_seeds(), **other_seeds(), **c2pa_seeds()}


def text_seeds() -> dict[str, bytes]:
    """Inputs of the generator-text harness: a selector byte, then the text (see there)."""
    texts = [COMFY_PROMPT, COMFY_WORKFLOW, WEBUI, SWARM, FOOOCUS, MIDJOURNEY, "[" * 5000]
    return {f"text_{i}_{j}": bytes([j]) + t.encode() for i, t in enumerate(texts) for j in range(8)}


def seeds(name: str) -> dict[str, bytes]:
    """The synthetic seeds of harness `name`."""
    if name == "xmp":
        return xmp_packets()
    if name == "exif":
        return {**exif_blocks(), "tiff": other_seeds()["tiff"]}
    if name == "generators":
        return text_seeds()
    return image_seeds()


def real_images() -> list[Path]:
    """The smallest few real files of each format in the shared data set."""
    if not SHARED_IMAGES.is_dir():
        return []
    by_suffix: dict[str, list[Path]] = {}
    for path in SHARED_IMAGES.rglob("*"):
        if path.is_file():
            by_suffix.setdefault(path.suffix.lower(), []).append(path)
    chosen: list[Path] = []
    for paths in by_suffix.values():
        chosen += sorted(paths, key=lambda p: p.stat().st_size)[:REAL_PER_FORMAT]
    return chosen


HARNESSES = ("provenance", "decode", "containers", "exif", "xmp", "generators")


def main() -> None:
    real = real_images()
    for name in HARNESSES:
        folder = FUZZ_DIR / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed, data in seeds(name).items():
            (folder / seed).write_bytes(data)
        if name in ("provenance", "decode", "containers"):
            for path in real:
                (folder / f"real_{path.name}").write_bytes(path.read_bytes())
        print(name, len(list(folder.iterdir())), "seeds")


if __name__ == "__main__":
    main()
