"""What subagents may touch: workspace files confined to a root, and git; each tool declares its reads
and writes."""

from tierwise.tools.git import git_tools, is_git_repo
from tierwise.tools.workspace import Tool, ToolError, Workspace


def workspace_tools(ws: Workspace) -> tuple[Tool, ...]:
    """Every read-only tool for ``ws``: list, read, search, and git log/diff when it is a repository."""
    return ws.tools() + (git_tools(ws) if is_git_repo(ws) else ())


__all__ = ["Tool", "ToolError", "Workspace", "git_tools", "is_git_repo", "workspace_tools"]
