"""A fault-injecting OpenAI-compatible loopback server for tests and benchmarks (`tierwise chaos-server`).

A leaf: it imports nothing else from tierwise, so any part's tests can use it.
"""

from tierwise.testing.instances import minimal_instance
from tierwise.testing.runner import ChaosServer, ChaosServerError, load_script, serve
from tierwise.testing.script import (
    Fault,
    FaultKind,
    FaultSchedule,
    Match,
    Reply,
    Rule,
    Script,
    ToolCallReply,
    UsageOverride,
)

__all__ = [
    "ChaosServer",
    "ChaosServerError",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "Match",
    "Reply",
    "Rule",
    "Script",
    "ToolCallReply",
    "UsageOverride",
    "load_script",
    "minimal_instance",
    "serve",
]
