"""IPTC Digital Source Type declared in XMP (`Iptc4xmpExt:DigitalSourceType`).

XMP is attacker-written XML. Python's expat resolves no external entities, and any
document type declaration is refused outright, which rules out entity-expansion bombs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance.findings import clip, metadata_error
from fakescope.provenance.source_types import SourceClass, classify, source_code

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP = "http://ns.adobe.com/xap/1.0/"
MAX_XMP_BYTES = 2 * 1024 * 1024
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_xmp(xmp: bytes) -> ET.Element:
    """The XMP packet as an element tree; ValueError for anything unsafe or malformed."""
    if len(xmp) > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {len(xmp)} bytes is over {MAX_XMP_BYTES}")
    if _DTD.search(xmp):
        raise ValueError("XMP with a DOCTYPE or ENTITY declaration is refused")
    start = xmp.find(b"<")
    if start < 0:
        raise ValueError("XMP holds no XML")
    try:
        return ET.fromstring(xmp[start:].rstrip(b"\x00 \r\n\t"))  # noqa: S314
    except ET.ParseError as exc:
        raise ValueError(f"malformed XMP: {exc}") from exc


def property_values(root: ET.Element, namespace: str, name: str) -> list[str]:
    """Every value of one XMP property, whether written as attribute, text or rdf:resource."""
    tag = f"{{{namespace}}}{name}"
    values: list[str] = []
    for element in root.iter():
        attribute = element.get(tag)
        if attribute:
            values.append(attribute)
        if element.tag == tag:
            resource = element.get(f"{{{RDF}}}resource")
            text = (element.text or "").strip()
            values.extend(v for v in (resource, text) if v)
            values.extend((li.text or "").strip() for li in element.iter(f"{{{RDF}}}li"))
    return [v for v in values if v]


def read_xmp_source_type(xmp: bytes | None) -> list[Evidence]:
    if not xmp:
        return []
    try:
        root = parse_xmp(xmp)
    except ValueError as exc:
        return [metadata_error("xmp", "XMP packet could not be parsed", error=exc)]
    findings: list[Evidence] = []
    for value in dict.fromkeys(property_values(root, IPTC_EXT, "DigitalSourceType")):
        findings.append(_source_type_finding(value))
    return findings


def creator_tools(xmp: bytes | None) -> list[str]:
    """`xmp:CreatorTool` values (the software that wrote the file); [] if unreadable."""
    if not xmp:
        return []
    try:
        return property_values(parse_xmp(xmp), XMP, "CreatorTool")
    except ValueError:
        return []


def _source_type_finding(value: str) -> Evidence:
    code = source_code(value)
    details = {"digital_source_type": clip(value), "code": clip(code)}
    kind = classify(value)
    if kind is SourceClass.GENERATIVE:
        # Unsigned XMP is easy to write, so it is strong evidence but never decisive.
        return Evidence(
            kind="iptc_digital_source_type",
            indicates=Indication.FAKE,
            strength=Strength.STRONG,
            summary=f"XMP declares the image as generated media (IPTC {code}).",
            source="xmp",
            details=details,
        )
    if kind is SourceClass.CAPTURE:
        return Evidence(
            kind="iptc_digital_source_type",
            indicates=Indication.REAL,
            strength=Strength.WEAK,
            summary=f"XMP declares a camera or film capture (IPTC {code}); unsigned, not proof.",
            source="xmp",
            details=details,
        )
    return Evidence(
        kind="iptc_digital_source_type",
        indicates=Indication.NEUTRAL,
        strength=Strength.INFO,
        summary=clip(f"XMP declares the digital source type {code}.", 200),
        source="xmp",
        details=details,
    )
