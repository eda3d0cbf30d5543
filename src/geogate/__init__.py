"""GeoGate: an identity-aware L7 gateway between AI agents and the endpoints they call."""

__version__ = "0.1.0"
