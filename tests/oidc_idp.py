"""A real OpenID provider (panva's oidc-provider, run by Node) for tests that need one.

GeoGate trusts OIDC tokens; these tests check it against a real provider rather than
hand-made JWTs alone. The provider lives in tests/idp (`make pytest` runs `npm ci` there).

    from tests.oidc_idp import OidcIdp, running_idp

    @pytest.fixture
    def idp(tmp_path: Path) -> Iterator[OidcIdp]:
        with running_idp(tmp_path, accounts={"ann": {"email": "ann@x.eu", "groups": ["support-eu"]}}) as idp:
            yield idp

    # policy: identity.oidc: [{issuer: idp.issuer, audience: idp.audience, groups_claim: groups}]
    token = idp.machine_token("bot@x.eu", ["support-eu"])           # client-credentials JWT, RS256
    token = idp.machine_token("bot@x.eu", alg="EdDSA", nested_groups=["finance"])  # realm_access.roles
    token = idp.sign({"sub": "x", "exp": 1})                        # crafted: expired, same key/kid
    idp.rotate_keys()   # new kids; old tokens no longer verify against the JWKS
    idp.stop(); idp.restart()   # IdP down (connection refused) / back on the same port and keys

Browser flows: `browser_login(rp_login_url, "ann")` follows the relying party's redirect to the IdP,
signs in and consents, and returns the IdP's redirect to the callback (not followed);
`device_login(verification_uri_complete, "ann")` approves a device-flow code as a person would.
Access tokens issued to users also carry `aud: idp.audience`, `email` and `groups`.

The IdP runs one Node process on 127.0.0.1 on a free port; its stderr is in FOLDER/idp-stderr.log.
Clients registered through `register_client` (and `machine_token`) survive `restart`/`rotate_keys`.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, OKPKey, RSAKey

IDP_DIR = Path(__file__).parent / "idp"
SERVER = IDP_DIR / "server.mjs"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0
MAX_BROWSER_STEPS = 20
PASSWORD = "any-password"  # devInteractions accept any password
# Fields of a registration response that are not client metadata (left out when re-seeding).
_REGISTRATION_ONLY = {"registration_access_token", "registration_client_uri"}


class OidcIdp:
    """One running oidc-provider process with its keys, accounts and clients."""

    def __init__(
        self,
        folder: Path,
        port: int,
        accounts: dict[str, dict[str, Any]],
        clients: list[dict[str, Any]],
        audience: str,
    ) -> None:
        self.folder = folder
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.audience = audience
        self.accounts = accounts
        self.keys = _generate_keys()
        self._clients = list(clients)
        self._cookie_keys = [secrets.token_urlsafe(32)]
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        accounts: dict[str, dict[str, Any]] | None = None,
        clients: list[dict[str, Any]] | None = None,
        audience: str = "geogate",
    ) -> OidcIdp:
        """Start an IdP on a free loopback port and wait until it serves requests."""
        folder.mkdir(parents=True, exist_ok=True)
        idp = cls(folder, _free_port(), accounts or {}, clients or [], audience)
        idp._launch()
        return idp

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def stop(self) -> None:
        """Terminate the process; the port refuses connections afterwards."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    def restart(self) -> None:
        """Stop and start again on the same port with the same keys and clients."""
        self.stop()
        self._launch()

    def rotate_keys(self) -> None:
        """Replace every key pair (new kids) and restart; the old keys leave the JWKS."""
        self.keys = _generate_keys()
        self.restart()

    def key_for(self, alg: str) -> Key:
        """The current private key the IdP signs `alg` tokens with."""
        for key in self.keys:
            if key.alg == alg:
                return key
        raise KeyError(f"no {alg} key")

    def register_client(self, **metadata: Any) -> dict[str, Any]:
        """Register a client via dynamic registration; returns client_id, client_secret, ..."""
        response = requests.post(f"{self.issuer}/reg", json=metadata, timeout=HTTP_TIMEOUT)
        if response.status_code != 201:
            raise RuntimeError(f"registration failed: {response.status_code} {response.text}")
        client: dict[str, Any] = response.json()
        self._clients.append({k: v for k, v in client.items() if k not in _REGISTRATION_ONLY})
        return client

    def machine_token(
        self,
        email: str,
        groups: list[str] | str | None = None,
        *,
        alg: str = "RS256",
        nested_groups: list[str] | None = None,
        ttl: int | None = None,
    ) -> str:
        """A client-credentials JWT access token for a new machine principal with these claims."""
        metadata: dict[str, Any] = {
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "email": email,
        }
        optional = {"groups": groups, "nested_groups": nested_groups, "token_ttl": ttl}
        metadata.update({k: v for k, v in optional.items() if v is not None})
        client = self.register_client(**metadata)
        response = requests.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "resource": f"urn:geogate:{alg}",
                "scope": "api",
            },
            auth=(client["client_id"], client["client_secret"]),
            timeout=HTTP_TIMEOUT,
        )
        if response.status_code != 200:
            raise RuntimeError(f"client_credentials failed: {response.status_code} {response.text}")
        token: str = response.json()["access_token"]
        return token

    def sign(
        self,
        claims: dict[str, Any],
        *,
        header: dict[str, Any] | None = None,
        kid: str | None = None,
        alg: str | None = None,
    ) -> str:
        """Mint a JWT with the IdP's own current key, for crafted cases (expired, wrong aud, ...).

        iss/aud/iat/exp (5 minutes) are filled unless given; a claim or header field set to None
        is left out. `kid` picks the key (its alg by default), else `alg` (RS256 by default) does.
        """
        key = self.keys.get_by_kid(kid) if kid is not None else self.key_for(alg or "RS256")
        alg = alg or key.alg or "RS256"
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + 300}
        payload.update(claims)
        fields = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
        return jwt.encode(
            {k: v for k, v in fields.items() if v is not None},
            {k: v for k, v in payload.items() if v is not None},
            key,
            algorithms=[alg],
        )

    def browser_login(
        self, start_url: str, username: str, *, session: requests.Session | None = None
    ) -> requests.Response:
        """Sign in as `username` from `start_url` and return the IdP's redirect back to the client.

        Redirects are followed (also those of a relying party in front), the login and consent
        forms are submitted; the first redirect from the IdP to elsewhere is returned unfollowed.
        """
        response = self._browse(session or requests.Session(), start_url, username)
        if not response.is_redirect:
            raise RuntimeError(
                f"login ended at {response.url}: {response.status_code} {response.text}"
            )
        return response

    def device_login(self, verification_uri_complete: str, username: str) -> None:
        """Approve a device-authorization request: confirm the code, sign in, consent."""
        response = self._browse(requests.Session(), verification_uri_complete, username)
        if response.status_code != 200 or "Sign-in Success" not in response.text:
            raise RuntimeError(f"device login failed: {response.status_code} {response.text}")

    def _at_idp(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.issuer).netloc

    def _browse(self, session: requests.Session, url: str, username: str) -> requests.Response:
        """Act as a browser: follow redirects and fill the IdP's forms until leaving the IdP."""
        response = session.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        for _ in range(MAX_BROWSER_STEPS):
            if response.is_redirect:
                target = urljoin(response.url, response.headers["location"])
                if self._at_idp(response.url) and not self._at_idp(target):
                    return response
                response = session.get(target, allow_redirects=False, timeout=HTTP_TIMEOUT)
                continue
            form = _first_form(response.text) if self._at_idp(response.url) else None
            if form is None:
                return response
            action = urljoin(response.url, form.action)
            if not self._at_idp(action):
                return response
            typed = {"login": username, "password": PASSWORD}
            data = {name: typed.get(name, value) for name, value in form.fields.items()}
            response = session.post(action, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT)
        raise RuntimeError(f"no way out of the IdP after {MAX_BROWSER_STEPS} steps")

    def _config(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks": self.keys.as_dict(private=True),
            "clients": self._clients,
            "accounts": self.accounts,
            "cookie_keys": self._cookie_keys,
        }

    def _launch(self) -> None:
        if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"oidc-provider is not installed: run `npm ci` in {IDP_DIR}")
        config = self.folder / "idp-config.json"
        config.write_text(json.dumps(self._config()))
        stderr_path = self.folder / "idp-stderr.log"
        with stderr_path.open("ab") as stderr:
            process = subprocess.Popen(
                [shutil.which("node") or "/usr/bin/node", str(SERVER), str(config)],
                stdin=subprocess.PIPE,  # the IdP exits when this closes, also if we are killed
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._process = process
        if not _wait_ready(process):
            self.stop()
            raise RuntimeError(f"the IdP did not start:\n{stderr_path.read_text()}")


@contextmanager
def running_idp(folder: Path, **kwargs: Any) -> Iterator[OidcIdp]:
    """`OidcIdp.start(folder, **kwargs)` for the duration of a with-block."""
    idp = OidcIdp.start(folder, **kwargs)
    try:
        yield idp
    finally:
        idp.stop()


def _generate_keys() -> KeySet:
    """One key per alg the IdP can sign with, each with a fresh kid."""

    def params(alg: str) -> KeyParameters:
        return {"kid": f"{alg.lower()}-{secrets.token_hex(4)}", "alg": alg, "use": "sig"}

    return KeySet(
        [
            RSAKey.generate_key(2048, parameters=params("RS256"), private=True),
            RSAKey.generate_key(2048, parameters=params("PS256"), private=True),
            ECKey.generate_key("P-256", parameters=params("ES256"), private=True),
            OKPKey.generate_key("Ed25519", parameters=params("EdDSA"), private=True),
        ]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[bytes]) -> bool:
    """Read the child's stdout until it says READY, exits, or START_TIMEOUT passes."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT
    output = b""
    while b"READY" not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return False
        chunk = os.read(fd, 4096)
        if not chunk:
            return False
        output += chunk
    return True


class _Form:
    def __init__(self, action: str) -> None:
        self.action = action
        self.fields: dict[str, str] = {}


class _FormParser(HTMLParser):
    """Collects the forms of a page with their named input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(attributes.get("action", "")))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1].fields[attributes["name"]] = attributes.get("value", "")


def _first_form(html: str) -> _Form | None:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms[0] if parser.forms else None
