"""Console sign-in through a SAML 2.0 identity provider: this gateway is the service provider.

The gateway's routes call three methods: `metadata` (for the IdP administrator), `login` (sends the
browser to the IdP with an HTTP-Redirect AuthnRequest) and `accept` (the HTTP-POST that comes back
to the ACS). pysaml2 does the protocol and the signature checks (xmlsec1, keys from the IdP's
metadata only). Where pysaml2 is lenient by default it is not trusted alone: it takes an assertion
with no audience restriction, checks the subject confirmation's Recipient only when given
"conversation info", and returns a response with no assertion (instead of raising) for a wrong
Destination. So `accept` re-checks the outcome it relies on: one assertion, signed, from the IdP,
for this SP, confirmed for this ACS and this request, inside its validity window.

pysaml2 is synchronous (xmlsec1 runs as a subprocess); the gateway calls `accept` in a thread.
One `Saml2Client` is built per `ServiceProvider`, so the IdP metadata is parsed once.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import contextlib
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree  # type: ignore[import-untyped]
from saml2 import (  # type: ignore[import-untyped]
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
)
from saml2.client import Saml2Client  # type: ignore[import-untyped]
from saml2.config import SPConfig  # type: ignore[import-untyped]
from saml2.metadata import entity_descriptor  # type: ignore[import-untyped]
from saml2.response import (  # type: ignore[import-untyped]
    StatusError,
    UnsolicitedResponse,
)
from saml2.s_utils import UnsupportedBinding  # type: ignore[import-untyped]
from saml2.saml import (  # type: ignore[import-untyped]
    NAMEID_FORMAT_TRANSIENT,
    SCM_BEARER,
)
from saml2.sigver import (  # type: ignore[import-untyped]
    DecryptError,
    MissingKey,
    SignatureError,
    SigverError,
)
from saml2.time_util import str_to_time  # type: ignore[import-untyped]
from saml2.validate import ResponseLifetimeExceed, ToEarly  # type: ignore[import-untyped]

from geogate.config.model import SamlLogin

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(seconds=30)
"""How far the gateway's and the IdP's clocks may disagree on NotBefore / NotOnOrAfter."""
_MAX_RESPONSE_CHARS = 1_000_000
"""A SAMLResponse form field longer than this is refused before it is decoded or parsed."""

_RETRY = "start the sign-in again from the console"
_NOT_SAML = f"The sign-in response is not a SAML response; {_RETRY}."
_NOT_FOR_THIS_LOGIN = (
    "The SAML response does not answer this browser's sign-in request "
    f"(it is unsolicited, for another request, or the request expired); {_RETRY}."
)
_UNSIGNED = (
    "The SAML assertion is not signed by the identity provider; configure the identity provider "
    "to sign assertions for this application."
)
_BAD_SIGNATURE = (
    "The SAML assertion's signature does not verify with the identity provider's certificate from "
    "its metadata; if the identity provider's certificate changed, update the metadata file."
)
_EXPIRED = (
    "The SAML assertion has expired; start the sign-in again, and check that the gateway's and the "
    "identity provider's clocks are right if this repeats."
)
_NOT_YET_VALID = (
    "The SAML assertion is not valid yet; check that the gateway's and the identity provider's "
    "clocks are right."
)
_UNKNOWN_ISSUER = (
    "The SAML assertion was issued by an identity provider that is not in the metadata file; "
    "check login.saml.idp_metadata."
)
_ENCRYPTED = (
    "The SAML assertion is encrypted, which this gateway does not support; turn off assertion "
    "encryption for this application at the identity provider."
)


@dataclass(frozen=True, slots=True)
class SamlIdentity:
    """Who signed in, as the IdP's signed assertion says."""

    user: str
    groups: frozenset[str]
    assertion_id: str
    expires_at: datetime
    """Aware UTC: the assertion's earliest NotOnOrAfter plus the allowed clock skew, the last
    instant `accept` would take it. The caller keeps `assertion_id` as used until then (replay)."""


class SamlError(Exception):
    """A SAML sign-in or setup failure; the message is one sentence a person can act on."""


class ServiceProvider:
    """This gateway as a SAML 2.0 SP of one IdP (the one described by `settings.idp_metadata`)."""

    def __init__(self, settings: SamlLogin, public_url: str) -> None:
        if shutil.which("xmlsec1") is None:
            raise SamlError(
                "SAML sign-in needs the xmlsec1 program to check signatures, and it is not "
                "installed; install it (Debian/Ubuntu: apt-get install xmlsec1) and retry."
            )
        _quiet_pysaml2()
        base = public_url.rstrip("/")
        self._entity_id = settings.entity_id or f"{base}/saml/metadata"
        self._acs_url = f"{base}/saml/acs"
        self._user_attribute = settings.user_attribute
        self._groups_attribute = settings.groups_attribute
        self._config = _sp_config(self._entity_id, self._acs_url, settings.idp_metadata)
        self._client: Any = Saml2Client(config=self._config)
        self._idp_entity_id = _single_idp(self._client, settings.idp_metadata)
        descriptor = str(entity_descriptor(self._config))
        self._metadata = b'<?xml version="1.0" encoding="UTF-8"?>\n' + descriptor.encode()

    def metadata(self) -> bytes:
        """This SP's metadata XML, for the IdP administrator to register the application."""
        return self._metadata

    def login(self, relay_state: str) -> tuple[str, str]:
        """(URL to redirect the browser to, the AuthnRequest id to remember for `accept`).

        `relay_state` comes back unchanged with the response; SAML allows at most 80 bytes.
        """
        try:
            request_id, info = self._client.prepare_for_authenticate(
                entityid=self._idp_entity_id,
                relay_state=relay_state,
                binding=BINDING_HTTP_REDIRECT,
                response_binding=BINDING_HTTP_POST,
            )
            location = dict(info["headers"])["Location"]
        except Exception as exc:  # pysaml2 raises many types; each means the same to the user
            log.warning("SAML AuthnRequest could not be built: %s", type(exc).__name__)
            raise SamlError(
                "The SAML sign-in request could not be built; check the identity provider's "
                "metadata file."
            ) from None
        return str(location), str(request_id)

    def accept(self, saml_response: str, request_id: str) -> SamlIdentity:
        """Check the ACS POST's `SAMLResponse` and say who signed in, or raise SamlError.

        `request_id` is what `login` returned for this browser; any other response is refused.
        """
        if not request_id:  # no sign-in under way in this browser (cookie gone or never set)
            raise SamlError(_NOT_FOR_THIS_LOGIN)
        xml = _decode(saml_response)
        try:
            response = self._client.parse_authn_request_response(
                xml,
                None,  # already decoded: pysaml2 must not base64-decode (or inflate) it again
                outstanding={request_id: self._acs_url},
            )
        except Exception as exc:  # pysaml2 raises many types; _explain names each for the user
            message = _explain(exc)
            log.warning("SAML response refused: %s (%s)", message, type(exc).__name__)
            raise SamlError(message) from None
        try:
            identity = self._identity(response, request_id)
        except SamlError as exc:
            log.warning("SAML response refused: %s", exc)
            raise
        finally:
            if response is not None and response.name_id is not None:
                # pysaml2 caches each subject in memory; unused here, so it must not grow. A
                # concurrent sign-in of the same subject may have removed it already.
                with contextlib.suppress(KeyError):
                    self._client.users.remove_person(response.name_id)
        return identity

    def _identity(self, response: Any, request_id: str) -> SamlIdentity:
        """The checks pysaml2 leaves to its caller, then the user, groups and expiry."""
        if response is None or response.response is None:
            raise SamlError(_NOT_SAML)
        message = response.response
        if message.destination and message.destination != self._acs_url:
            raise SamlError(
                "The SAML response was sent to another address than this gateway's "
                f"{self._acs_url}; register that address as the ACS URL at the identity provider."
            )
        if message.in_response_to != request_id:
            raise SamlError(_NOT_FOR_THIS_LOGIN)
        if message.encrypted_assertion:
            raise SamlError(_ENCRYPTED)
        if len(message.assertion) != 1 or response.assertion is None:
            raise SamlError(f"The SAML response must carry exactly one assertion; {_RETRY}.")
        assertion = response.assertion
        if assertion.signature is None:
            raise SamlError(_UNSIGNED)
        issuer = (assertion.issuer.text or "").strip() if assertion.issuer is not None else ""
        if issuer != self._idp_entity_id:  # another entity of the file may have signed it
            raise SamlError(
                "The SAML assertion was not issued by the identity provider of the metadata file "
                f"({self._idp_entity_id}); check login.saml.idp_metadata."
            )
        self._check_audience(assertion)
        expires = self._check_confirmation(assertion, request_id)
        return SamlIdentity(
            user=self._user(response, assertion),
            groups=frozenset(_values(assertion, self._groups_attribute)),
            assertion_id=str(assertion.id),
            expires_at=expires + CLOCK_SKEW,
        )

    def _check_audience(self, assertion: Any) -> None:
        """SAML's browser SSO profile requires an audience restriction naming this SP."""
        conditions = assertion.conditions
        audiences = [
            (audience.text or "").strip()
            for restriction in (conditions.audience_restriction if conditions else [])
            for audience in restriction.audience
        ]
        if self._entity_id not in audiences:
            raise SamlError(
                "The SAML assertion is meant for another application, not for this gateway's "
                f"entity id {self._entity_id}; register that entity id at the identity provider."
            )

    def _check_confirmation(self, assertion: Any, request_id: str) -> datetime:
        """Bearer confirmations for our ACS and request; returns the earliest NotOnOrAfter."""
        deadlines: list[datetime] = []
        bearer = [
            confirmation
            for confirmation in assertion.subject.subject_confirmation
            if confirmation.method == SCM_BEARER
        ]
        if not bearer:
            raise SamlError(
                "The SAML assertion has no bearer subject confirmation; configure the identity "
                "provider for SAML 2.0 web browser single sign-on."
            )
        for confirmation in bearer:
            data = confirmation.subject_confirmation_data
            if data is None or data.recipient != self._acs_url:
                raise SamlError(
                    f"The SAML assertion is not addressed to this gateway's {self._acs_url}; "
                    "register that address as the ACS URL at the identity provider."
                )
            if data.in_response_to != request_id:
                raise SamlError(_NOT_FOR_THIS_LOGIN)
            if not data.not_on_or_after:
                raise SamlError(
                    "The SAML assertion does not say until when it is valid (NotOnOrAfter); "
                    "configure the identity provider for SAML 2.0 web browser single sign-on."
                )
            deadlines.append(_instant(data.not_on_or_after))
        if assertion.conditions is not None and assertion.conditions.not_on_or_after:
            deadlines.append(_instant(assertion.conditions.not_on_or_after))
        expires = min(deadlines)
        now = datetime.now(UTC)
        if now >= expires + CLOCK_SKEW:  # pysaml2 checks this too; it is what replay relies on
            raise SamlError(_EXPIRED)
        return expires

    def _user(self, response: Any, assertion: Any) -> str:
        """The user: the configured attribute's single value, or the persistent NameID."""
        if self._user_attribute is not None:
            values = _values(assertion, self._user_attribute)
            if not values:
                raise SamlError(
                    f"The SAML assertion has no {self._user_attribute!r} attribute naming the "
                    "user; release it to this application at the identity provider, or change "
                    "login.saml.user_attribute."
                )
            if len(values) != 1:
                raise SamlError(
                    f"The SAML assertion's {self._user_attribute!r} attribute has "
                    f"{len(values)} values, not one user; change login.saml.user_attribute."
                )
            return values[0]
        name_id = response.name_id
        user = (name_id.text or "").strip() if name_id is not None else ""
        if not user:
            raise SamlError(
                "The SAML assertion names no user (NameID); configure a NameID at the identity "
                "provider, or set login.saml.user_attribute."
            )
        if name_id.format == NAMEID_FORMAT_TRANSIENT:
            raise SamlError(
                "The SAML assertion names the user with a transient NameID, which changes at "
                "every sign-in; configure a persistent or email NameID at the identity provider, "
                "or set login.saml.user_attribute."
            )
        return user


def _sp_config(entity_id: str, acs_url: str, idp_metadata: str) -> Any:
    """pysaml2's SP configuration; the IdP metadata is read (once) here."""
    config = SPConfig()
    settings = {
        "entityid": entity_id,
        "metadata": {"local": [idp_metadata]},
        "accepted_time_diff": int(CLOCK_SKEW.total_seconds()),
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(acs_url, BINDING_HTTP_POST)]},
                "want_assertions_signed": True,
                "want_response_signed": False,  # many IdPs sign only the assertion: that suffices
                "authn_requests_signed": False,
                "allow_unsolicited": False,
                "allow_unknown_attributes": True,
            }
        },
    }
    try:
        config.load(settings)
    except OSError as exc:
        raise SamlError(
            f"The SAML identity provider metadata file {idp_metadata} cannot be read "
            f"({exc.strerror or type(exc).__name__}); check login.saml.idp_metadata."
        ) from None
    except Exception as exc:  # pysaml2 raises many types for a bad file; the fix is the same
        log.warning("SAML IdP metadata %s refused: %s", idp_metadata, type(exc).__name__)
        raise SamlError(
            f"The SAML identity provider metadata file {idp_metadata} is not valid SAML metadata; "
            "download it again from the identity provider."
        ) from None
    return config


def _single_idp(client: Any, idp_metadata: str) -> str:
    """The entity id of the one IdP in the metadata, which must sign and take HTTP-Redirect."""
    idps = sorted(client.metadata.with_descriptor("idpsso"))
    if not idps:  # pysaml2 also drops an entity whose validUntil has passed, silently
        raise SamlError(
            f"The SAML metadata file {idp_metadata} describes no identity provider that is still "
            "valid; download the identity provider's metadata again."
        )
    if len(idps) > 1:
        raise SamlError(
            f"The SAML metadata file {idp_metadata} describes {len(idps)} identity providers, not "
            "one; download the metadata of your identity provider alone."
        )
    idp = str(idps[0])
    try:  # pysaml2 raises UnsupportedBinding rather than answer "none"
        redirect = client.metadata.single_sign_on_service(idp, BINDING_HTTP_REDIRECT)
    except UnsupportedBinding:
        redirect = None
    if not redirect:
        raise SamlError(
            f"The SAML identity provider in {idp_metadata} offers no HTTP-Redirect single sign-on "
            "service; enable that binding at the identity provider and download its metadata again."
        )
    if not client.metadata.certs(idp, "idpsso", "signing"):
        raise SamlError(
            f"The SAML identity provider metadata file {idp_metadata} has no signing certificate; "
            "download it again from the identity provider."
        )
    return idp


def _decode(saml_response: str) -> str:
    """The form field as XML text, refused if it is not base64 of one XML document with no DTD.

    SAML never carries a DTD; refusing any (as defusedxml's `forbid_dtd`) stops entity-expansion
    and external-entity tricks before pysaml2 or xmlsec1 see the document.
    """
    if len(saml_response) > _MAX_RESPONSE_CHARS:
        raise SamlError(f"The SAML response is too large; {_RETRY}.")
    try:
        raw = base64.b64decode("".join(saml_response.split()), validate=True)
        xml = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise SamlError(_NOT_SAML) from None
    try:
        defusedxml.ElementTree.fromstring(raw, forbid_dtd=True)
    except defusedxml.DefusedXmlException:
        raise SamlError(
            f"The SAML response contains a document type declaration, which SAML forbids; {_RETRY}."
        ) from None
    except Exception:  # ParseError and its kin: not XML at all
        raise SamlError(_NOT_SAML) from None
    return xml


def _explain(exc: Exception) -> str:
    """One sentence for a pysaml2 failure; never its message, which may quote the XML."""
    if isinstance(exc, UnsolicitedResponse):
        return _NOT_FOR_THIS_LOGIN
    if isinstance(exc, StatusError):
        status = type(exc).__name__.removeprefix("Status") or "an error"
        return (
            f"The identity provider did not sign you in (it answered {status}); try again, or ask "
            "your administrator to check your access to this application."
        )
    if isinstance(exc, ResponseLifetimeExceed):
        return _EXPIRED
    if isinstance(exc, ToEarly):
        return _NOT_YET_VALID
    if isinstance(exc, DecryptError):
        return _ENCRYPTED
    if isinstance(exc, SignatureError) and "Signature missing" in str(exc):
        return _UNSIGNED
    if isinstance(exc, SigverError):  # SignatureError, MissingKey, CertificateError, ...
        return _UNKNOWN_ISSUER if isinstance(exc, MissingKey) else _BAD_SIGNATURE
    if "AudienceRestrictions" in str(exc):
        return (
            "The SAML assertion is meant for another application, not for this gateway; "
            "check the entity id registered at the identity provider."
        )
    return f"The SAML response was refused as malformed or incomplete; {_RETRY}."


def _values(assertion: Any, name: str) -> list[str]:
    """Text values of the attribute whose Name (or FriendlyName) is `name`, as the IdP sent it."""
    values: list[str] = []
    for statement in assertion.attribute_statement:
        for attribute in statement.attribute:
            if name in (attribute.name, attribute.friendly_name):
                values.extend(
                    text
                    for value in attribute.attribute_value
                    if (text := (value.text or "").strip())
                )
    return values


def _instant(text: str) -> datetime:
    """A SAML dateTime (UTC) as an aware datetime."""
    try:
        parsed = str_to_time(text)
    except Exception:  # pysaml2 raises ValueError or AttributeError for a bad timestamp
        raise SamlError(f"The SAML assertion has an unreadable validity time; {_RETRY}.") from None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


def _quiet_pysaml2() -> None:
    """pysaml2 logs whole documents and assertion contents (at INFO, and ERROR); keep them out.

    Only when nobody configured its logger: an operator may still set `saml2` to DEBUG to trace.
    """
    library = logging.getLogger("saml2")
    if library.level == logging.NOTSET:
        library.setLevel(logging.CRITICAL)
