"""Generator fingerprints as real tools write them, rebuilt here byte for byte in their
formats: ComfyUI's WebP EXIF, Fooocus, SwarmUI, Midjourney, Draw Things, and the IPTC
Digital Source Type vocabulary (in XMP and in signed C2PA manifests)."""

from __future__ import annotations

import json

import c2pa_signing
import hostile_images as hostile
import pytest
from PIL import Image
from provenance_checks import kinds, only

from fakescope.evidence import Indication, Strength
from fakescope.provenance import read_provenance

PNG = hostile.encode(hostile.scene(), "PNG")
COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {"sampler_name": "euler", "steps": 20, "seed": 7}},
}
A1111 = "a fox\nSteps: 30, Sampler: dpmpp_2m, CFG scale: 4, Seed: 99, Version: Fooocus v2.5.5"


def test_comfyui_webp_graph_in_exif_make_and_model_is_a_workflow_not_a_camera() -> None:
    # ComfyUI's SaveAnimatedWEBP: Model = "prompt:<json>", Make = "workflow:<json>".
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(COMFY_PROMPT)
    exif[0x010F] = "workflow:" + json.dumps({"nodes": [{"type": "KSampler"}]})
    data = hostile.encode(hostile.scene(), "WEBP", exif=exif.tobytes())
    findings = read_provenance(data)
    finding = only(findings, "comfyui_workflow")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.STRONG)
    assert finding.source == "exif:Model/Make"
    assert finding.details["models"] == ["sdxl.safetensors"]
    assert "camera_exif" not in kinds(findings)


def test_fooocus_png_with_json_parameters_is_recognised() -> None:
    parameters = json.dumps(
        {
            "prompt": "a fox",
            "base_model": "juggernautXL.safetensors",
            "steps": 30,
            "seed": "42",
            "version": "Fooocus v2.5.5",
        }
    )
    data = hostile.png_with_chunks(
        PNG,
        hostile.text_chunk("parameters", parameters),
        hostile.text_chunk("fooocus_scheme", "fooocus"),
    )
    findings = read_provenance(data)
    json_finding = next(f for f in findings if f.source == "png:parameters")
    assert json_finding.details["generator"] == "Fooocus"
    assert json_finding.details["base_model"] == "juggernautXL.safetensors"
    assert "Fooocus" in json_finding.summary
    scheme = next(f for f in findings if f.source == "png:fooocus_scheme")
    assert scheme.strength is Strength.STRONG


def test_fooocus_jpeg_user_comment_in_ifd0_and_software_are_recognised() -> None:
    # Fooocus puts UserComment (0x9286) into IFD0, not the EXIF sub-IFD, next to Software.
    exif = Image.Exif()
    exif[0x9286] = A1111
    exif[0x0131] = "Fooocus v2.5.5"
    exif[0x927C] = "a1111"
    findings = read_provenance(hostile.encode(hostile.scene(), "JPEG", exif=exif.tobytes()))
    assert only(findings, "generator_parameters").source == "exif:UserComment"
    assert only(findings, "generator_software").details["generator"] == "Fooocus"


SWARM = json.dumps(
    {
        "sui_image_params": {
            "prompt": "a fox",
            "model": "Flux/flux1-dev",
            "seed": 5,
            "steps": 25,
            "swarm_version": "0.9.1.1",
        },
        "sui_extra_data": {"date": "2024-08-07"},
    },
    indent=2,
)


def test_swarmui_png_parameters_json_is_recognised() -> None:
    data = hostile.png_with_chunks(PNG, hostile.itxt_chunk("parameters", SWARM))
    finding = only(read_provenance(data), "generator_parameters")
    assert finding.details["generator"] == "SwarmUI"
    assert finding.details["model"] == "Flux/flux1-dev"
    assert "model Flux/flux1-dev" in finding.summary


def test_swarmui_jpeg_user_comment_json_is_recognised() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + SWARM.encode("utf-16-be")
    data = hostile.encode(hostile.scene(), "JPEG", exif=exif.tobytes())
    finding = only(read_provenance(data), "generator_parameters")
    assert (finding.source, finding.details["generator"]) == ("exif:UserComment", "SwarmUI")


def test_json_parameters_of_no_known_generator_claim_nothing() -> None:
    data = hostile.png_with_chunks(PNG, hostile.text_chunk("parameters", '{"steps": 3}'))
    assert read_provenance(data) == []


def test_midjourney_png_description_with_a_job_id_is_recognised() -> None:
    job = "a7421d2f-b262-44f9-977c-ac23e9c7d3e3"
    data = hostile.png_with_chunks(
        PNG,
        hostile.text_chunk("Author", "someone"),
        hostile.text_chunk("Description", f"a fox --ar 2:1 --v 6 Job ID: {job}"),
    )
    finding = only(read_provenance(data), "generator_parameters")
    assert finding.details["generator"] == "Midjourney"
    assert finding.details["job_id"] == job
    assert finding.details["prompt"] == "a fox --ar 2:1 --v 6"


def test_a_plain_png_description_claims_nothing() -> None:
    data = hostile.png_with_chunks(PNG, hostile.text_chunk("Description", "Job ID: 12, holiday"))
    assert read_provenance(data) == []


def test_draw_things_creator_tool_is_recognised() -> None:
    xmp = hostile.xmp_packet(
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        "<xmp:CreatorTool>Draw Things</xmp:CreatorTool></rdf:Description>"
    )
    data = hostile.encode(hostile.scene(), "JPEG", xmp=xmp.encode())
    finding = only(read_provenance(data), "generator_software")
    assert (finding.source, finding.details["generator"]) == ("xmp:CreatorTool", "Draw Things")


@pytest.mark.parametrize(
    ("code", "indicates", "strength"),
    [
        ("trainedAlgorithmicMedia", Indication.FAKE, Strength.STRONG),
        ("compositeWithTrainedAlgorithmicMedia", Indication.FAKE, Strength.STRONG),
        ("algorithmicMedia", Indication.FAKE, Strength.WEAK),
        ("compositeSynthetic", Indication.FAKE, Strength.WEAK),
        ("digitalCapture", Indication.REAL, Strength.WEAK),
        ("computationalCapture", Indication.REAL, Strength.WEAK),
        ("digitalArt", Indication.NEUTRAL, Strength.INFO),
        ("screenCapture", Indication.NEUTRAL, Strength.INFO),
    ],
)
def test_iptc_digital_source_types_in_xmp_weigh_by_their_definition(
    code: str, indicates: Indication, strength: Strength
) -> None:
    xmp = hostile.xmp_digital_source_type(code, as_attribute=False)
    data = hostile.encode(hostile.scene(), "JPEG", xmp=xmp.encode())
    finding = only(read_provenance(data), "iptc_digital_source_type")
    assert (finding.indicates, finding.strength, finding.details["code"]) == (
        indicates,
        strength,
        code,
    )
    assert len(finding.summary) <= 200


def test_digital_source_type_as_element_text_is_read() -> None:
    xmp = hostile.xmp_packet(
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        "<Iptc4xmpExt:DigitalSourceType>"
        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
        "</Iptc4xmpExt:DigitalSourceType></rdf:Description>"
    )
    data = hostile.encode(hostile.scene(), "WEBP", xmp=xmp.encode())
    assert only(read_provenance(data), "iptc_digital_source_type").strength is Strength.STRONG


def test_signed_synthetic_claim_is_weak_fake_evidence_not_decisive() -> None:
    image = hostile.encode(hostile.scene(), "JPEG")
    manifest = c2pa_signing.manifest_with_actions(c2pa_signing.created("compositeSynthetic"))
    findings = read_provenance(c2pa_signing.sign(image, "JPEG", manifest))
    finding = only(findings, "c2pa_manifest")
    assert (finding.indicates, finding.strength) == (Indication.FAKE, Strength.WEAK)
    assert "c2pa_generative" not in kinds(findings)
