"""What a C2PA manifest store says, read from c2pa-python's JSON (`Reader.json()`): claim
generator, actions, validation codes, and the chain of ingredient manifests.

The store is untrusted input: every field may have any shape, ingredients may nest
without end or loop, so the ingredient walk is bounded and never follows a manifest twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from fakescope.provenance.findings import clip, clip_list
from fakescope.provenance.source_types import SourceClass, classify, source_code

UNTRUSTED = "signingCredential.untrusted"
# Actions read from one manifest: all of them are classified (a generative action after
# many others still counts); only the first DETAIL_ITEMS go into the details.
MAX_ACTIONS = 1000
MAX_INGREDIENT_DEPTH = 8
MAX_MANIFESTS = 32  # manifests followed, the active one included
MAX_INGREDIENTS = 64  # ingredient entries looked at, in all


@dataclass(frozen=True)
class Ingredient:
    """An ingredient entry and what its own manifest (when the store holds it) declares."""

    title: str
    relationship: str
    claim_generator: str
    source_types: list[str]  # bare IPTC codes
    depth: int  # 1 for an ingredient of the active manifest
    has_manifest: bool
    failures: list[str]  # integrity failures of this ingredient's manifest
    chain_failed: bool  # an integrity failure here or on the way from the active manifest
    top_relationship: str  # how the active manifest used the branch holding this ingredient

    @property
    def generative(self) -> bool:
        return any(classify(t) is SourceClass.GENERATIVE for t in self.source_types)

    def detail(self) -> dict[str, Any]:
        validation = "failed" if self.failures else "ok" if self.has_manifest else "no manifest"
        return {
            "title": self.title,
            "relationship": self.relationship,
            "claim_generator": self.claim_generator,
            "digital_source_types": clip_list(self.source_types),
            "depth": self.depth,
            "validation": validation,
            "validation_failures": clip_list(self.failures),
        }


def claim_generator(manifest: dict[str, Any]) -> str:
    generator = manifest.get("claim_generator")
    if isinstance(generator, str) and generator:
        return generator
    names = [
        " ".join(str(i.get(k, "")) for k in ("name", "version")).strip()
        for i in _dicts(manifest.get("claim_generator_info"))
    ]
    return "; ".join(n for n in names if n)


def actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for assertion in _dicts(manifest.get("assertions")):
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in _dicts(_dict(assertion.get("data")).get("actions")):
            agent = action.get("softwareAgent")
            if isinstance(agent, dict):
                agent = " ".join(str(agent.get(k, "")) for k in ("name", "version")).strip()
            found.append(
                {
                    "action": clip(str(action.get("action", ""))),
                    "digitalSourceType": clip(str(action.get("digitalSourceType") or "")),
                    "softwareAgent": clip(str(agent or "")),
                }
            )
            if len(found) == MAX_ACTIONS:
                return found
    return found


def failure_codes(store: dict[str, Any]) -> list[str]:
    results = _dict(_dict(store.get("validation_results")).get("activeManifest"))
    entries = results.get("failure") if results else store.get("validation_status")
    return list(dict.fromkeys(_codes(entries)))


def claim_verified(store: dict[str, Any]) -> bool:
    results = _dict(_dict(store.get("validation_results")).get("activeManifest"))
    failed = _codes(results.get("failure"))
    return "claimSignature.validated" in _codes(results.get("success")) and not any(
        code.startswith("claimSignature.") for code in failed
    )


def ingredients(store: dict[str, Any], active_label: str) -> list[Ingredient]:
    """The ingredients of the active manifest and, through their manifests, theirs: breadth
    first, within MAX_INGREDIENT_DEPTH, MAX_MANIFESTS and MAX_INGREDIENTS."""
    manifests = _dict(store.get("manifests"))
    deltas: dict[str, list[str]] = {}
    _add_deltas(deltas, store.get("validation_results"))
    declared: dict[str, tuple[str, list[str]]] = {}
    found: list[Ingredient] = []
    visited = {active_label}
    queue: deque[tuple[str, Ingredient | None]] = deque([(active_label, None)])
    while queue and len(found) < MAX_INGREDIENTS:
        label, parent = queue.popleft()
        entries = _list(_dict(manifests.get(label)).get("ingredients"))
        for entry in _dicts(entries[: MAX_INGREDIENTS - len(found)]):
            ingredient = _ingredient(entry, label, parent, manifests, deltas, declared)
            found.append(ingredient)
            ref = entry.get("active_manifest")
            if (
                ingredient.has_manifest
                and isinstance(ref, str)
                and ref not in visited
                and ingredient.depth < MAX_INGREDIENT_DEPTH
                and len(visited) < MAX_MANIFESTS
            ):
                visited.add(ref)
                _add_deltas(deltas, entry.get("validation_results"))
                queue.append((ref, ingredient))
    return found


def _ingredient(
    entry: dict[str, Any],
    owner: str,
    parent: Ingredient | None,
    manifests: dict[str, Any],
    deltas: dict[str, list[str]],
    declared: dict[str, tuple[str, list[str]]],
) -> Ingredient:
    ref = entry.get("active_manifest")
    manifest = manifests.get(ref) if isinstance(ref, str) else None
    generator, source_types = "", list[str]()
    if isinstance(ref, str) and isinstance(manifest, dict):
        if ref not in declared:
            types = dict.fromkeys(source_code(a["digitalSourceType"]) for a in actions(manifest))
            declared[ref] = (clip(claim_generator(manifest)), [t for t in types if t])
        generator, source_types = declared[ref]
    # What the editor's SDK found when it added the ingredient (signed into the editor's
    # claim), then what the reader found now about the ingredient's manifest bytes.
    recorded = entry.get("validation_results")
    if isinstance(recorded, dict):
        codes = _codes(_dict(recorded.get("activeManifest")).get("failure"))
    else:
        codes = _codes(entry.get("validation_status"))
    codes += deltas.get(f"self#jumbf=/c2pa/{owner}/c2pa.assertions/{entry.get('label')}", [])
    failures = [code for code in dict.fromkeys(codes) if code != UNTRUSTED]
    relationship = clip(str(entry.get("relationship") or ""))
    return Ingredient(
        title=clip(str(entry.get("title") or "")),
        relationship=relationship,
        claim_generator=generator,
        source_types=source_types,
        depth=parent.depth + 1 if parent else 1,
        has_manifest=isinstance(manifest, dict),
        failures=failures,
        chain_failed=bool(failures) or (parent is not None and parent.chain_failed),
        top_relationship=parent.top_relationship if parent else relationship,
    )


def _add_deltas(deltas: dict[str, list[str]], results: Any) -> None:
    """Failure codes from `ingredientDeltas`, by ingredient assertion URI (the URI names the
    manifest holding the ingredient, so those from nested results do not collide)."""
    for delta in _dicts(_dict(results).get("ingredientDeltas")):
        uri = str(delta.get("ingredientAssertionURI") or "")
        failed = _codes(_dict(delta.get("validationDeltas")).get("failure"))
        deltas.setdefault(uri, []).extend(failed)


def _codes(entries: Any) -> list[str]:
    return [str(e["code"]) for e in _dicts(entries) if e.get("code")]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in _list(value) if isinstance(item, dict)]
