"""An MCP client built on the official Python SDK (`mcp`), driven by the integration tests.

Reads a plan from stdin: {"transport": "http" | "stdio", "url", "key", "easm" (the binary, for
stdio), "modern" (start with server/discover, the 2026-07-28 revision, instead of initialize),
"calls": [[tool, arguments], ...], "resources": [uri, ...]}. Connects over Streamable HTTP (the
key as a bearer token) or launches `easm mcp --url --key` and speaks stdio to it, initializes,
lists tools and resource templates, makes the calls and prints one JSON object per line.
"""

import json
import sys

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def out(**fields):
    print(json.dumps(fields), flush=True)


async def drive(session, plan):
    if plan.get("modern"):
        found = await session.discover()
        out(initialized=max(found.supported_versions), tools=bool(found.capabilities.tools))
    else:
        init = await session.initialize()
        out(initialized=init.protocol_version, server=init.server_info.name)
    tools = await session.list_tools()
    out(tools=[t.name for t in tools.tools],
        schemas={t.name: t.input_schema for t in tools.tools},
        output_schemas=[t.name for t in tools.tools if t.output_schema])
    templates = await session.list_resource_templates()
    out(templates=[t.uri_template for t in templates.resource_templates])
    for name, arguments in plan.get("calls", []):
        try:
            r = await session.call_tool(name, arguments)
            text = "".join(c.text for c in r.content if c.type == "text")
            out(call=name, is_error=bool(r.is_error), text=text,
                structured=r.structured_content)
        except MCPError as e:
            out(call=name, error={"code": e.code, "message": e.message})
    for uri in plan.get("resources", []):
        try:
            r = await session.read_resource(uri)
            out(resource=uri, text=r.contents[0].text, mime=r.contents[0].mime_type)
        except MCPError as e:
            out(resource=uri, error={"code": e.code, "message": e.message})


async def main():
    plan = json.load(sys.stdin)
    if plan["transport"] == "http":
        headers = {"Authorization": f"Bearer {plan['key']}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with streamable_http_client(plan["url"], http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await drive(session, plan)
    else:
        params = StdioServerParameters(
            command=plan["easm"], args=["mcp", "--url", plan["url"], "--key", plan["key"]])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await drive(session, plan)


anyio.run(main)
