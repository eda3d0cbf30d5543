"""`geogate demo-llm`: run the built-in demo LLM upstream (SPEC §5)."""

from __future__ import annotations

from typing import Annotated

import typer

from geogate.cli.common import parse_listen
from geogate.demo import DemoSettings, serve


def demo_llm(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on, e.g. 127.0.0.1:8090.")
    ] = "127.0.0.1:8090",
    chunk_delay: Annotated[
        float,
        typer.Option("--chunk-delay", min=0.0, help="Seconds between streamed events."),
    ] = 0.02,
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key",
            help="The upstream key callers must send; a GeoGate connection injects it.",
            envvar="GEOGATE_DEMO_API_KEY",
        ),
    ] = "demo-upstream-key",
) -> None:
    """Run the demo LLM: OpenAI- and Anthropic-compatible, streams, echoes the prompt."""
    host, port = parse_listen(listen)
    if not api_key:
        raise typer.BadParameter("the upstream key must not be empty", param_hint="--api-key")
    base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    typer.echo(
        f"Demo LLM on {base_url} (OpenAI base URL {base_url}/v1, Anthropic base URL "
        f"{base_url}). Press Ctrl+C to stop.",
        err=True,
    )
    serve(host, port, DemoSettings(api_key=api_key, chunk_delay=chunk_delay))
