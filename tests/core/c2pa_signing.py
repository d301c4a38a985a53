"""Sign images with C2PA manifests made up by the tests, using a throwaway certificate chain
generated on the spot (a test CA and an ES256 signer; never on any trust list).

`cryptography` comes with c2pa-python, which depends on it."""

from __future__ import annotations

import datetime
import functools
import io
from collections.abc import Sequence
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FakeScope Tests"),
        ]
    )


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signer,
        crl_sign=not signer,
        encipher_only=False,
        decipher_only=False,
    )


@functools.cache
def signing_credentials() -> tuple[bytes, bytes]:
    """(PEM certificate chain signer-first, PEM PKCS#8 private key) for an ES256 signer."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("FakeScope Test CA"))
        .issuer_name(_name("FakeScope Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signer=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name("FakeScope Test Signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signer=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = signer.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return chain, private


def manifest_with_actions(
    *actions: dict[str, Any], generator: str = "fakescope-tests"
) -> dict[str, Any]:
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "test image",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": list(actions)}}],
    }


def created(source_type: str) -> dict[str, Any]:
    """A c2pa.created action with an IPTC digital source type code."""
    return {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}


def using(action: str, ingredient_label: str) -> dict[str, Any]:
    """An action (c2pa.opened, c2pa.placed) on the ingredient added under that label."""
    return {"action": action, "parameters": {"ingredientIds": [ingredient_label]}}


def ingredient(label: str, title: str, relationship: str) -> dict[str, Any]:
    return {"label": label, "title": title, "relationship": relationship}


def sign(
    image: bytes,
    fmt: str,
    manifest: dict[str, Any],
    ingredients: Sequence[tuple[dict[str, Any], bytes]] = (),
) -> bytes:
    """`image` signed with `manifest`; each ingredient is (its JSON, a JPEG file's bytes)."""
    chain, private = signing_credentials()
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None)
    signer = c2pa.Signer.from_info(info)
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        for ingredient_json, data in ingredients:
            builder.add_ingredient(ingredient_json, MIME["JPEG"], io.BytesIO(data))
        builder.sign(signer, MIME[fmt], io.BytesIO(image), signed)
    return signed.getvalue()
