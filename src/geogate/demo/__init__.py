"""The built-in demo LLM upstream (`geogate demo-llm`).

A stand-in for a remote model provider that speaks OpenAI's and Anthropic's real wire formats,
streaming included, so the quickstart works with no keys and no network. It answers
`You said: <last user message>`, which makes the gateway's masking visible in every reply, and
it demands its own upstream key, which makes the gateway's credential injection visible too.

    from geogate.demo import DemoSettings, serve

    serve("127.0.0.1", 8090, DemoSettings(api_key="demo-upstream-key"))

    # elsewhere:
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8090/v1", api_key="demo-upstream-key")
    client.chat.completions.create(model="demo-echo", messages=[{"role": "user", "content": "hi"}])

`geogate.demo.server` lists the endpoints, including `GET /v1/debug/echo-headers` for tests.
"""

from geogate.demo.server import create_demo_app, serve
from geogate.demo.settings import DemoSettings

__all__ = ["DemoSettings", "create_demo_app", "serve"]
