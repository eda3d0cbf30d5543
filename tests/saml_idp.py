"""A real SAML 2.0 identity provider for tests, on pysaml2's IdP side (`saml2.server.Server`).

    idp = SamlIdp.create(tmp_path)                  # key, self-signed cert, IdP metadata file
    sp = ServiceProvider(SamlLogin(idp_metadata=str(idp.metadata_path)), "https://gw.test")
    idp.trust(sp.metadata())                        # the IdP learns the SP from its metadata
    url, request_id = sp.login("/console")
    form_value = idp.respond(url, user="alice", groups=["eng"])
    sp.accept(form_value, request_id)

`respond` answers the AuthnRequest found in the redirect URL the way a real IdP would (Response to
the SP's ACS, bearer confirmation, audience, validity window), with knobs to make it wrong: an
unsigned assertion, one signed by another key, an expired or not-yet-valid one, another audience.
"""

from __future__ import annotations

import base64
import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT, Attribute, AttributeStatement, AttributeValue
from saml2.sigver import pre_signature_part
from saml2.time_util import instant
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

with warnings.catch_warnings():  # pysaml2's IdP side imports a cipher mode cryptography deprecated
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2.server import Server

NAME_FORMAT_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
PASSWORD_CONTEXT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


@dataclass(frozen=True)
class SigningKey:
    """An RSA key and its self-signed certificate, as PEM files."""

    key_path: Path
    cert_path: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = folder / f"{name}.key", folder / f"{name}.crt"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key_path, cert_path)

    @property
    def cert_base64(self) -> str:
        """The certificate's DER as base64, as KeyInfo/X509Certificate carries it."""
        lines = self.cert_path.read_text().strip().splitlines()
        return "".join(lines[1:-1])


class SamlIdp:
    """One IdP (entity id, key, metadata file) that answers AuthnRequests of the SPs it trusts."""

    def __init__(
        self, folder: Path, entity_id: str, key: SigningKey, sso_url: str | None = None
    ) -> None:
        self.folder = folder
        self.entity_id = entity_id
        self.key = key
        self.sso_url = sso_url or f"{entity_id}/sso"
        """Base of the single sign-on endpoints: `/redirect` and `/post` follow it."""
        self.metadata_path = folder / "idp-metadata.xml"
        self._server: Any = None
        self._sp_metadata: list[str] = []

    @classmethod
    def create(cls, folder: Path, entity_id: str = "https://idp.test/saml") -> SamlIdp:
        idp = cls(folder, entity_id, SigningKey.create(folder, "idp"))
        idp.metadata_path.write_text(str(entity_descriptor(idp._config())))
        return idp

    def _config(self) -> Any:
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "key_file": str(self.key.key_path),
                "cert_file": str(self.key.cert_path),
                "metadata": {"inline": self._sp_metadata} if self._sp_metadata else {},
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [
                                (f"{self.sso_url}/redirect", BINDING_HTTP_REDIRECT),
                                (f"{self.sso_url}/post", BINDING_HTTP_POST),
                            ]
                        },
                        "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    }
                },
            }
        )
        return config

    def trust(self, sp_metadata: bytes) -> None:
        """Register one more SP (its entity id, ACS URL) from the metadata it publishes."""
        if sp_metadata.decode() not in self._sp_metadata:
            self._sp_metadata.append(sp_metadata.decode())
        self._server = Server(config=self._config())

    def respond(
        self,
        authn_request_url: str,
        *,
        user: str,
        groups: Sequence[str] = (),
        sign_assertion: bool = True,
        sign_response: bool = False,
        lifetime: timedelta = timedelta(minutes=5),
        not_before_offset: timedelta = timedelta(0),
        name_id: str | None = None,
        name_id_format: str = NAMEID_FORMAT_PERSISTENT,
        attributes: dict[str, list[str]] | None = None,
        signing_key: SigningKey | None = None,
        audience: str | None = None,
        in_response_to: str | None = None,
        destination: str | None = None,
        recipient: str | None = None,
    ) -> str:
        """The base64 `SAMLResponse` form value answering the AuthnRequest in the redirect URL.

        The assertion names `name_id` (default `user`) in `name_id_format` and carries
        `uid=[user]`, `groups` and `attributes`; it is valid from now + `not_before_offset` for
        `lifetime`. `signing_key` signs instead of the IdP's key from the metadata. To make it
        wrong: `audience` replaces the SP's entity id ("" drops the restriction), `in_response_to`
        the request id ("" for an unsolicited response), `destination` the Response's Destination
        and `recipient` the bearer confirmation's Recipient (both the SP's ACS URL by default).
        """
        if self._server is None:
            raise RuntimeError("call trust(sp.metadata()) first")
        query = parse_qs(urlsplit(authn_request_url).query)
        request = self._server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        message = request.message
        acs_url = message.assertion_consumer_service_url
        sp_entity_id = message.issuer.text
        request_id = message.id if in_response_to is None else in_response_to or None
        response = self._server.create_authn_response(
            identity={},
            in_response_to=request_id,
            destination=acs_url,
            sp_entity_id=sp_entity_id,
            name_id=saml.NameID(
                format=name_id_format,
                name_qualifier=self.entity_id,
                sp_name_qualifier=sp_entity_id,
                text=name_id if name_id is not None else user,
            ),
            authn={"class_ref": PASSWORD_CONTEXT},
            sign_assertion=False,
            sign_response=False,
        )
        assertion = response.assertion
        self._set_validity(assertion, not_before_offset, lifetime)
        if destination is not None:
            response.destination = destination
        if recipient is not None:
            for confirmation in assertion.subject.subject_confirmation:
                confirmation.subject_confirmation_data.recipient = recipient
        if audience == "":
            assertion.conditions.audience_restriction = []
        elif audience is not None:
            assertion.conditions.audience_restriction[0].audience[0].text = audience
        values = {"uid": [user], "groups": list(groups), **(attributes or {})}
        assertion.attribute_statement = [
            AttributeStatement(
                attribute=[
                    Attribute(
                        name=name,
                        name_format=NAME_FORMAT_BASIC,
                        attribute_value=[AttributeValue(text=value) for value in vals],
                    )
                    for name, vals in values.items()
                    if vals
                ]
            )
        ]
        key = signing_key or self.key
        to_sign: list[tuple[str, str]] = []
        if sign_assertion:
            assertion.signature = pre_signature_part(
                assertion.id, key.cert_base64, 1, DIGEST_SHA256, SIG_RSA_SHA256
            )
            to_sign.append(("urn:oasis:names:tc:SAML:2.0:assertion:Assertion", assertion.id))
        if sign_response:
            response.signature = pre_signature_part(
                response.id, key.cert_base64, 2, DIGEST_SHA256, SIG_RSA_SHA256
            )
            to_sign.append(("urn:oasis:names:tc:SAML:2.0:protocol:Response", response.id))
        xml = response.to_string().decode()
        for node_name, node_id in to_sign:  # inner first: the Response's digest covers it
            xml = self._server.sec.sign_statement(
                xml, node_name, key_file=str(key.key_path), node_id=node_id
            )
        return base64.b64encode(xml.encode()).decode()

    @staticmethod
    def _set_validity(assertion: Any, not_before_offset: timedelta, lifetime: timedelta) -> None:
        now = dt.datetime.now(dt.UTC)
        start, end = now + not_before_offset, now + not_before_offset + lifetime
        not_before = instant(time_stamp=int(start.timestamp()))
        not_on_or_after = instant(time_stamp=int(end.timestamp()))
        assertion.conditions.not_before = not_before
        assertion.conditions.not_on_or_after = not_on_or_after
        for confirmation in assertion.subject.subject_confirmation:
            confirmation.subject_confirmation_data.not_on_or_after = not_on_or_after
