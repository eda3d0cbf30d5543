"""The gateway: wires the flow of DESIGN.md into an ASGI app; nothing else imports it."""

from geogate.gateway.app import GatewayApp, create_app

__all__ = ["GatewayApp", "create_app"]
