"""Protocol adapters: what differs between connection types, behind one small interface.

Each adapter knows how its provider's SDK expects an error to look, whether request bodies
must be JSON, and which request facts it can read cheaply. Policy and the gateway never parse a
provider format themselves.
"""

from __future__ import annotations

from geogate.protocols.base import ProtocolAdapter, RequestBodyError
from geogate.protocols.bedrock import SigV4Signer
from geogate.protocols.registry import adapter_for
from geogate.protocols.text import BodyRewriter
from geogate.protocols.vertex import GoogleTokenSource, TokenError

__all__ = [
    "BodyRewriter",
    "GoogleTokenSource",
    "ProtocolAdapter",
    "RequestBodyError",
    "SigV4Signer",
    "TokenError",
    "adapter_for",
]
