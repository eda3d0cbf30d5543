"""The SAML service provider against a real pysaml2 IdP: what it accepts, and all it refuses."""

from __future__ import annotations

import base64
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import defusedxml
import pytest
from saml2 import samlp

from geogate.config.model import SamlLogin
from geogate.identity.saml import CLOCK_SKEW, SamlError, SamlIdentity, ServiceProvider
from tests.saml_idp import SamlIdp, SigningKey

PUBLIC_URL = "https://gw.test"
ACS_URL = f"{PUBLIC_URL}/saml/acs"
ENTITY_ID = f"{PUBLIC_URL}/saml/metadata"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@dataclass
class World:
    """The module's IdP and SP (each trusting the other), and a key the SP does not know."""

    idp: SamlIdp
    sp: ServiceProvider
    other_key: SigningKey
    folder: Path

    def sp_with(self, **settings: str) -> ServiceProvider:
        """Another SP (same public URL, same IdP metadata) with other login.saml settings."""
        sp = ServiceProvider(
            SamlLogin(idp_metadata=str(self.idp.metadata_path), **settings), PUBLIC_URL
        )
        self.idp.trust(sp.metadata())
        return sp


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One IdP and SP for the module: keys are slow to make, and both are stateless per login."""
    folder = tmp_path_factory.mktemp("saml")
    idp = SamlIdp.create(folder / "idp")
    sp = ServiceProvider(SamlLogin(idp_metadata=str(idp.metadata_path)), PUBLIC_URL)
    idp.trust(sp.metadata())
    yield World(idp, sp, SigningKey.create(folder / "other", "other"), folder)


def sign_in(world: World, sp: ServiceProvider | None = None, **respond: Any) -> SamlIdentity:
    """The whole round trip: SP login -> IdP response -> SP accept."""
    sp = sp or world.sp
    url, request_id = sp.login("/console")
    return sp.accept(world.idp.respond(url, **respond), request_id)


def refused(world: World, *, sp: ServiceProvider | None = None, **respond: Any) -> str:
    with pytest.raises(SamlError) as caught:
        sign_in(world, sp, **respond)
    return checked_message(caught.value)


def checked_message(error: SamlError) -> str:
    """A refusal is one readable sentence, never raw XML or a chained pysaml2 traceback."""
    message = str(error)
    assert message.endswith(".") and "<" not in message and "\n" not in message
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return message


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def edit(form_value: str, old: str, new: str) -> str:
    xml = base64.b64decode(form_value).decode()
    assert old in xml
    return b64(xml.replace(old, new))


# --- accepted -------------------------------------------------------------------------------


def test_signed_assertion_names_the_user_by_nameid_with_groups(world: World) -> None:
    identity = sign_in(world, user="alice", groups=["eng", "support-eu"])
    assert identity.user == "alice"
    assert identity.groups == {"eng", "support-eu"}
    assert identity.assertion_id


def test_user_from_the_configured_attribute(world: World) -> None:
    sp = world.sp_with(user_attribute="email", groups_attribute="roles")
    identity = sign_in(
        world,
        sp,
        user="alice",
        name_id="opaque-7f3a",
        groups=["ignored"],
        attributes={"email": ["alice@example.com"], "roles": ["admin", "ops"]},
    )
    assert identity.user == "alice@example.com"
    assert identity.groups == {"admin", "ops"}


def test_no_groups_attribute_means_no_groups(world: World) -> None:
    assert sign_in(world, user="bob").groups == frozenset()


def test_signed_response_around_the_signed_assertion_is_fine(world: World) -> None:
    assert sign_in(world, user="carol", sign_response=True).user == "carol"


def test_small_clock_skew_is_tolerated(world: World) -> None:
    assert sign_in(world, user="dave", not_before_offset=timedelta(seconds=10)).user == "dave"
    just_expired = {"not_before_offset": timedelta(minutes=-5, seconds=-10)}
    assert sign_in(world, user="dave", lifetime=timedelta(minutes=5), **just_expired).user == "dave"


def test_same_response_gives_the_same_assertion_id_until_it_expires(world: World) -> None:
    """Replay protection is the caller's store claim on (assertion_id, expires_at)."""
    url, request_id = world.sp.login("/console")
    form_value = world.idp.respond(url, user="erin", lifetime=timedelta(minutes=5))
    first = world.sp.accept(form_value, request_id)
    again = world.sp.accept(form_value, request_id)
    assert first.assertion_id == again.assertion_id
    assert first.expires_at.tzinfo is UTC
    expected = datetime.now(UTC) + timedelta(minutes=5) + CLOCK_SKEW
    assert abs(first.expires_at - expected) < timedelta(seconds=5)


def test_login_redirects_to_the_idp_with_a_fresh_request(world: World) -> None:
    url, request_id = world.sp.login("/console/keys")
    _, again_id = world.sp.login("/console/keys")
    assert request_id != again_id
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{world.idp.sso_url}/redirect"
    query = parse_qs(parts.query)
    assert query["RelayState"] == ["/console/keys"]
    assert query["SAMLRequest"]


def test_metadata_names_the_acs_and_wants_signed_assertions(world: World) -> None:
    root = ET.fromstring(world.sp.metadata())
    assert root.tag == f"{MD}EntityDescriptor"
    assert root.get("entityID") == ENTITY_ID
    (descriptor,) = root.iter(f"{MD}SPSSODescriptor")
    assert descriptor.get("WantAssertionsSigned") == "true"
    (acs,) = descriptor.iter(f"{MD}AssertionConsumerService")
    assert acs.get("Location") == ACS_URL
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


def test_configured_entity_id_is_used(world: World) -> None:
    sp = world.sp_with(entity_id="urn:geogate:console")
    assert ET.fromstring(sp.metadata()).get("entityID") == "urn:geogate:console"
    assert sign_in(world, sp, user="frank").user == "frank"


# --- refused: signature ---------------------------------------------------------------------


@pytest.mark.parametrize("sign_response", [False, True])
def test_unsigned_assertion_is_refused_even_in_a_signed_response(
    world: World, sign_response: bool
) -> None:
    message = refused(world, user="alice", sign_assertion=False, sign_response=sign_response)
    assert "not signed" in message


@pytest.mark.parametrize("sign_response", [False, True])
def test_assertion_signed_by_another_key_is_refused(world: World, sign_response: bool) -> None:
    """The other key's certificate rides in KeyInfo: only the metadata's key may count."""
    message = refused(world, user="alice", signing_key=world.other_key, sign_response=sign_response)
    assert "does not verify" in message


@pytest.mark.parametrize("sign_response", [False, True])
def test_assertion_changed_after_signing_is_refused(world: World, sign_response: bool) -> None:
    url, request_id = world.sp.login("/console")
    form_value = world.idp.respond(url, user="mallory", groups=["eng"], sign_response=sign_response)
    forged = edit(form_value, ">eng<", ">security<")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(forged, request_id)
    assert "does not verify" in checked_message(caught.value)
    assert world.sp.accept(form_value, request_id).groups == {"eng"}  # the untouched one passes


def wrapped(xml: str, how: str) -> str:
    """Signature wrapping: a forged assertion beside or around the genuine signed one."""
    start = xml.index("<ns1:Assertion")
    end = xml.index("</ns1:Assertion>") + len("</ns1:Assertion>")
    genuine = xml[start:end]
    forged = genuine.replace(">alice<", ">mallory<")
    unsigned_forged = re.sub(r"<ns2:Signature .*?</ns2:Signature>", "", forged, flags=re.S)
    advice = f"</ns1:Conditions><ns1:Advice>{genuine}</ns1:Advice>"
    extensions = f"<ns0:Extensions>{genuine}</ns0:Extensions><ns0:Status>"
    return {
        "genuine-in-advice": xml[:start] + forged.replace("</ns1:Conditions>", advice) + xml[end:],
        "forged-beside-genuine": xml[:start] + unsigned_forged + genuine + xml[end:],
        "genuine-in-extensions": xml[:start].replace("<ns0:Status>", extensions)
        + forged
        + xml[end:],
    }[how]


@pytest.mark.parametrize(
    "how", ["genuine-in-advice", "forged-beside-genuine", "genuine-in-extensions"]
)
def test_signature_wrapping_is_refused(world: World, how: str) -> None:
    url, request_id = world.sp.login("/console")
    xml = base64.b64decode(world.idp.respond(url, user="alice")).decode()
    with pytest.raises(SamlError) as caught:
        world.sp.accept(b64(wrapped(xml, how)), request_id)
    checked_message(caught.value)
    assert world.sp.accept(b64(xml), request_id).user == "alice"


def stranger(world: World) -> SamlIdp:
    """Another IdP, with its own key, answering at the same address under another entity id."""
    return SamlIdp(
        world.folder / "stranger",
        "https://stranger.test/saml",
        world.other_key,
        sso_url=world.idp.sso_url,
    )


def test_assertion_from_an_idp_not_in_the_metadata_is_refused(world: World) -> None:
    idp = stranger(world)
    idp.trust(world.sp.metadata())
    url, request_id = world.sp.login("/console")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(idp.respond(url, user="alice"), request_id)
    assert "not in the metadata" in checked_message(caught.value)


def test_assertion_signed_by_another_entity_of_the_metadata_file_is_refused(
    world: World, tmp_path: Path
) -> None:
    """pysaml2 trusts the signing key of any entity in the file; only the IdP's may count."""
    idp = stranger(world)
    aggregate = tmp_path / "aggregate.xml"
    aggregate.write_text(
        f'<md:EntitiesDescriptor xmlns:md="{MD[1:-1]}" xmlns:ds="{DS[1:-1]}">'
        f"{world.idp.metadata_path.read_text()}"
        f'<md:EntityDescriptor entityID="{idp.entity_id}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{world.other_key.cert_base64}"
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        '<md:AssertionConsumerService index="1" Location="https://stranger.test/acs"'
        ' Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor></md:EntitiesDescriptor>"
    )
    sp = ServiceProvider(SamlLogin(idp_metadata=str(aggregate)), PUBLIC_URL)
    idp.trust(sp.metadata())
    url, request_id = sp.login("/console")
    with pytest.raises(SamlError) as caught:
        sp.accept(idp.respond(url, user="alice"), request_id)
    assert "not issued by the identity provider" in checked_message(caught.value)


# --- refused: conditions --------------------------------------------------------------------


def test_expired_assertion_is_refused(world: World) -> None:
    message = refused(
        world, user="alice", not_before_offset=timedelta(minutes=-10), lifetime=timedelta(minutes=5)
    )
    assert "expired" in message


def test_not_yet_valid_assertion_is_refused(world: World) -> None:
    assert "not valid yet" in refused(world, user="alice", not_before_offset=timedelta(minutes=2))


def test_response_to_another_request_is_refused(world: World) -> None:
    url, _ = world.sp.login("/console")
    _, other_id = world.sp.login("/console")
    form_value = world.idp.respond(url, user="alice")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(form_value, other_id)
    assert "does not answer this browser's sign-in request" in checked_message(caught.value)


@pytest.mark.parametrize("in_response_to", ["", "id-made-up"])
def test_unsolicited_or_foreign_response_is_refused(world: World, in_response_to: str) -> None:
    message = refused(world, user="alice", in_response_to=in_response_to)
    assert "does not answer this browser's sign-in request" in message


def test_response_without_a_sign_in_under_way_is_refused(world: World) -> None:
    """No request id (the browser's cookie is gone): even an IdP-initiated response is refused."""
    url, _ = world.sp.login("/console")
    form_value = world.idp.respond(url, user="alice", in_response_to="")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(form_value, "")
    assert "does not answer this browser's sign-in request" in checked_message(caught.value)


@pytest.mark.parametrize("audience", ["https://other-app.test/saml/metadata", ""])
def test_assertion_for_another_sp_or_for_anyone_is_refused(world: World, audience: str) -> None:
    assert "meant for another application" in refused(world, user="alice", audience=audience)


def test_response_sent_to_another_acs_is_refused(world: World) -> None:
    message = refused(world, user="alice", destination="https://other-app.test/saml/acs")
    assert "sent to another address" in message


def test_assertion_for_another_recipient_is_refused(world: World) -> None:
    message = refused(world, user="alice", recipient="https://other-app.test/saml/acs")
    assert "not addressed to this gateway" in message


def test_missing_or_ambiguous_user_attribute_is_refused(world: World) -> None:
    sp = world.sp_with(user_attribute="email")
    message = refused(world, sp=sp, user="alice", attributes={"mail": ["alice@example.com"]})
    assert "has no 'email' attribute" in message
    message = refused(world, sp=sp, user="alice", attributes={"email": ["a@x.test", "b@x.test"]})
    assert "has 2 values" in message


def test_transient_nameid_cannot_name_the_user(world: World) -> None:
    transient = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    message = refused(world, user="alice", name_id="_5f1c0e", name_id_format=transient)
    assert "transient NameID" in message
    sp = world.sp_with(user_attribute="uid")  # the attribute still names the user
    assert sign_in(world, sp, user="alice", name_id_format=transient).user == "alice"


# --- refused: not SAML, or hostile XML ------------------------------------------------------

XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" Version="2.0"
  IssueInstant="2030-01-01T00:00:00Z"><samlp:Status>&xxe;</samlp:Status></samlp:Response>"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" Version="2.0"
  IssueInstant="2030-01-01T00:00:00Z">&lol3;</samlp:Response>"""


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_entity_tricks_are_refused(world: World, payload: str) -> None:
    _, request_id = world.sp.login("/console")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(b64(payload), request_id)
    assert "document type declaration" in checked_message(caught.value)
    with pytest.raises(defusedxml.EntitiesForbidden):  # and pysaml2's own parser refuses them too
        samlp.response_from_string(payload)


def test_dtd_inside_an_otherwise_valid_signed_response_is_refused(world: World) -> None:
    url, request_id = world.sp.login("/console")
    form_value = world.idp.respond(url, user="alice")
    with_dtd = edit(form_value, '<?xml version="1.0"?>', '<?xml version="1.0"?><!DOCTYPE x []>')
    with pytest.raises(SamlError) as caught:
        world.sp.accept(with_dtd, request_id)
    assert "document type declaration" in checked_message(caught.value)


@pytest.mark.parametrize(
    "form_value",
    [
        "",
        "%%% not base64 %%%",
        b64("just some text"),
        b64("<html><body>login page</body></html>"),
        b64('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>'),
        base64.b64encode(b"\xff\xfe<\x00x\x00").decode(),
        "A" * 2_000_000,
    ],
    ids=["empty", "not-base64", "not-xml", "html", "empty-response", "not-utf8", "huge"],
)
def test_garbage_is_refused_with_a_sentence(world: World, form_value: str) -> None:
    _, request_id = world.sp.login("/console")
    with pytest.raises(SamlError) as caught:
        world.sp.accept(form_value, request_id)
    checked_message(caught.value)


def test_pysaml2_logging_never_shows_assertion_contents(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sign_in(world, user="secret-user-1", groups=["secret-group-1"])
    refused(world, user="secret-user-2", signing_key=world.other_key)
    refused(world, user="secret-user-3", audience="https://other-app.test")
    assert "secret-" not in caplog.text
    assert not [record for record in caplog.records if record.name.startswith("saml2")]


# --- IdP metadata ---------------------------------------------------------------------------


def without(xml: str, tag: str, **attributes: str) -> str:
    """The IdP metadata less every `tag` element whose attributes include `attributes`."""
    root = ET.fromstring(xml)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == tag and all(child.get(k) == v for k, v in attributes.items()):
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


def broken_metadata(world: World) -> dict[str, tuple[str | None, str]]:
    """name -> (file content, None for no file; what the refusal says)."""
    good = world.idp.metadata_path.read_text()
    twin = good.replace(world.idp.entity_id, "https://twin.test/saml")
    redirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
    not_valid, no_idp = "is not valid SAML metadata", "describes no identity provider"
    return {
        "missing": (None, "cannot be read (No such file or directory)"),
        "empty": ("", not_valid),
        "not-xml": ("this is not XML", not_valid),
        "truncated": (good[: len(good) // 2], not_valid),
        "xxe": (XXE, not_valid),
        "html": ("<html><body>Sign in</body></html>", no_idp),
        "sp-only": (world.sp.metadata().decode(), no_idp),
        "expired": (
            good.replace(" entityID=", ' validUntil="2001-01-01T00:00:00Z" entityID='),
            no_idp,
        ),
        "two-idps": (
            f'<md:EntitiesDescriptor xmlns:md="{MD[1:-1]}">{good}{twin}</md:EntitiesDescriptor>',
            "describes 2 identity providers",
        ),
        "no-signing-key": (without(good, f"{MD}KeyDescriptor"), "no signing certificate"),
        "no-redirect-sso": (
            without(good, f"{MD}SingleSignOnService", Binding=redirect),
            "no HTTP-Redirect",
        ),
    }


def test_broken_idp_metadata_fails_at_construction(world: World, tmp_path: Path) -> None:
    for name, (content, reason) in broken_metadata(world).items():
        path = tmp_path / f"{name}.xml"
        if content is not None:
            path.write_text(content)
        with pytest.raises(SamlError) as caught:
            ServiceProvider(SamlLogin(idp_metadata=str(path)), PUBLIC_URL)
        message = checked_message(caught.value)
        assert str(path) in message and reason in message, name


def test_a_missing_xmlsec1_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idp = SamlIdp.create(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SamlError, match="apt-get install xmlsec1"):
        ServiceProvider(SamlLogin(idp_metadata=str(idp.metadata_path)), "https://gw.test")
