"""XMP packets: IPTC Digital Source Type (`Iptc4xmpExt:DigitalSourceType`) and the writing
software (`xmp:CreatorTool`).

XMP is attacker-written XML, read here with expat in one streaming pass: any document type
declaration is refused the moment expat meets it (whatever the packet's encoding, UTF-16
included), so no entity is ever declared, expanded or fetched; nesting is capped; no tree is
built, and only the few wanted properties are kept.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from xml.parsers import expat

from fakescope.evidence import Evidence, Indication, Strength
from fakescope.provenance.findings import clip, metadata_error
from fakescope.provenance.source_types import SourceClass, classify, source_code

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP = "http://ns.adobe.com/xap/1.0/"
DIGITAL_SOURCE_TYPE = f"{IPTC_EXT} DigitalSourceType"
CREATOR_TOOL = f"{XMP} CreatorTool"
WANTED = (DIGITAL_SOURCE_TYPE, CREATOR_TOOL)
MAX_XMP_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64  # real packets nest about ten deep
MAX_VALUES = 8  # per property
_RESOURCE = f"{RDF} resource"
_LI = f"{RDF} li"
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass
class XmpProperties:
    """The wanted properties' values, in document order, deduplicated and capped."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        value = value.strip()
        kept = self.values.setdefault(name, [])
        if value and value not in kept and len(kept) < MAX_VALUES:
            kept.append(clip(value))

    def get(self, name: str) -> list[str]:
        return self.values.get(name, [])


def parse_xmp(xmp: bytes) -> XmpProperties:
    """The wanted properties of an XMP packet; ValueError for anything unsafe or malformed."""
    if len(xmp) > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {len(xmp)} bytes is over {MAX_XMP_BYTES}")
    if not xmp.startswith(_BOMS):
        start = xmp.find(b"<")
        if start < 0:
            raise ValueError("XMP holds no XML")
        xmp = xmp[start:]
    reader = _Reader()
    try:
        reader.parser.Parse(xmp, True)
    except expat.ExpatError as exc:
        # Padding or junk after the packet's root element is common and harmless.
        if not reader.finished:
            raise ValueError(f"malformed XMP: {exc}") from exc
    except LookupError as exc:
        # expat asks Python's codecs for an encoding it lacks: encoding="UTF-nnnn16".
        raise ValueError(f"malformed XMP: {exc}") from exc
    return reader.found


class _Reader:
    def __init__(self) -> None:
        self.found = XmpProperties()
        self.depth = 0
        self.finished = False
        self.open: list[tuple[str, int]] = []  # wanted elements being read, with their depth
        self.text: list[str] = []
        self.text_chars = 0
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_doctype
        parser.ExternalEntityRefHandler = self._refuse_doctype
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._characters
        self.parser = parser

    def _refuse_doctype(self, *args: object) -> int:
        raise ValueError("XMP with a DOCTYPE or ENTITY declaration is refused")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError(f"XMP nested deeper than {MAX_DEPTH} elements")
        for wanted in WANTED:
            if wanted in attributes:
                self.found.add(wanted, attributes[wanted])
        if name in WANTED:
            self.open.append((name, self.depth))
            self.found.add(name, attributes.get(_RESOURCE, ""))
        if self.open and (name in WANTED or name == _LI):
            self.text, self.text_chars = [], 0

    def _characters(self, data: str) -> None:
        if self.open and self.text_chars < 4096:
            self.text.append(data)
            self.text_chars += len(data)

    def _end(self, name: str) -> None:
        if self.open and (name == _LI or self.open[-1] == (name, self.depth)):
            self.found.add(self.open[-1][0], "".join(self.text))
            self.text, self.text_chars = [], 0
        if self.open and self.open[-1] == (name, self.depth):
            self.open.pop()
        self.depth -= 1
        self.finished = self.depth == 0


def read_xmp(xmp: bytes | None) -> tuple[XmpProperties, list[Evidence]]:
    """The packet's properties and, for an unreadable packet, one metadata_error."""
    if not xmp:
        return XmpProperties(), []
    try:
        return parse_xmp(xmp), []
    except ValueError as exc:
        return XmpProperties(), [metadata_error("xmp", "XMP packet could not be parsed", error=exc)]


def source_type_findings(properties: XmpProperties) -> list[Evidence]:
    return [_source_type_finding(v) for v in properties.get(DIGITAL_SOURCE_TYPE)]


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
    if kind is SourceClass.SYNTHETIC:
        return Evidence(
            kind="iptc_digital_source_type",
            indicates=Indication.FAKE,
            strength=Strength.WEAK,
            summary=clip(
                f"XMP declares synthetic media not made by a trained model (IPTC {code}).", 200
            ),
            source="xmp",
            details=details,
        )
    if kind is SourceClass.CAPTURE:
        return Evidence(
            kind="iptc_digital_source_type",
            indicates=Indication.REAL,
            strength=Strength.WEAK,
            summary=clip(
                f"XMP declares a camera or film capture (IPTC {code}); unsigned, not proof.", 200
            ),
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
