"""A client of an OpenAI-compatible API: tool calls are data we parse, not instructions."""

import json


def tool_call(name: str, path: str) -> dict:
    # e.g. {"name": "read_file", "arguments": {"path": "src/app.py"}}
    return {"name": name, "arguments": json.dumps({"path": path})}


def parse(body: dict) -> list[dict]:
    calls = body["choices"][0]["message"].get("tool_calls") or []
    return [c["function"] for c in calls]


def safe(path: str) -> bool:
    # refuse "../" so a model cannot leave the root
    return ".." not in path.split("/")
