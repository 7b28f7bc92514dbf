"""The vocabulary every part speaks: tiers, task kinds, stakes, layers, the default kind → tier table,
``Task`` and ``Decision``, messages and tools, usage and capabilities. It imports nothing of ours but
``errors``, so every other part can depend on it without depending on each other."""

from tierwise.core.messages import Message, Role, ToolCall, ToolSpec
from tierwise.core.task import AnswerCheck, Decision, Escalation, Task
from tierwise.core.tiers import (
    DEFAULT_TIER,
    Layer,
    Stakes,
    TaskKind,
    Tier,
    default_tier,
    layer_of,
    parse_kind,
    parse_tier,
)
from tierwise.core.usage import Capability, Usage

__all__ = [
    "DEFAULT_TIER",
    "AnswerCheck",
    "Capability",
    "Decision",
    "Escalation",
    "Layer",
    "Message",
    "Role",
    "Stakes",
    "Task",
    "TaskKind",
    "Tier",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "default_tier",
    "layer_of",
    "parse_kind",
    "parse_tier",
]
