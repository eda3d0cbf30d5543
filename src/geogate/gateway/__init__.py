"""The gateway: wires the flow of DESIGN.md into an ASGI app; nothing else imports it."""

from geogate.gateway.app import BASE_DIR_ENV, CONFIG_ENV, GatewayApp, create_app

__all__ = ["BASE_DIR_ENV", "CONFIG_ENV", "GatewayApp", "create_app"]
