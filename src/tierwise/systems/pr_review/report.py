"""A PR review as Markdown (for people), JSON (for scripts) and SARIF 2.1.0 (for code-scanning tools)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tierwise.systems.pr_review.types import AREAS, PRReview
from tierwise.systems.reporting import cost_line

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
TOOL_NAME = "tierwise-pr-review"
# SARIF has three result levels; the five severities fold into them, and keep their own name in properties.
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub code scanning reads `security-severity` (0-10) on security rules' results to rank alerts.
SECURITY_SCORE = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
_AREA_TEXT = {
    "security": "Security risk introduced or touched by the change",
    "performance": "Performance risk introduced by the change",
    "logic": "Logic error or behaviour change that may be wrong",
    "tests": "Missing, weakened or broken tests",
}
# Findings of the injection detector (``source == "rule"``) get a rule of their own, so code scanning can
# tell "this change carries text aimed at AI tools" from a model's security finding.
INJECTION_RULE = {
    "id": "tierwise/prompt-injection",
    "name": "PromptInjection",
    "shortDescription": {"text": "Text in the change that tries to instruct AI reviewers or agents"},
    "properties": {"tags": ["security", "prompt-injection"]},
}
_VERDICT = {
    "request_changes": "changes requested (critical or high findings)",
    "comment": "comments (no critical or high findings)",
    "approve": "no findings",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rv: PRReview) -> str:
    counts = rv.counts()
    lines = [
        f"# PR review: `{rv.base}...{rv.head}`",
        "",
        f"**Verdict:** {_VERDICT[rv.verdict]} · {len(rv.findings)} finding(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + ("" if rv.findings else "none"),
        "",
        "## Summary",
        "",
        rv.summary,
        "",
    ]
    if rv.actions:
        lines += ["## Recommended actions", "", *(f"{i}. {a}" for i, a in enumerate(rv.actions, 1)), ""]
    if rv.findings:
        how = {"rule": ", prompt injection, found in code"}
        lines += ["## Findings", "", "| id | severity | area | location | title |", "|---|---|---|---|---|"]
        lines += [
            f"| {f.id} | {f.severity} | {f.area} | `{_cell(f.file)}:{f.line}` | {_cell(f.title)} |"
            for f in rv.findings
        ]
        lines.append("")
        for f in rv.findings:
            lines += [
                f"### {f.id} · {f.severity} · {_cell(f.title)}",
                "",
                f"`{f.file}:{f.line}` ({f.area}{how.get(f.source, '')})",
                "",
            ]
            if f.detail:
                lines += [f.detail, ""]
            if f.duplicates:
                lines += ["Merged duplicates: " + "; ".join(f.duplicates), ""]
    lines += ["## Files", "", "| file | status | +/- | reviewed |", "|---|---|---|---|"]
    lines += [
        f"| `{_cell(f.path)}` | {f.status} | +{f.additions}/-{f.deletions} | "
        f"{'yes' if f.reviewed else 'no'}{' (' + f.note + ')' if f.note else ''} |"
        for f in rv.files
    ]
    lines.append("")
    if rv.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in rv.warnings), ""]
    if rv.cut:
        lines += [
            "## Cut to fit the model's context window",
            "",
            "| input | step | cut | tokens kept |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{_cell(c['input'])}` | {c['step']} | {c['action']} | {c['kept_tokens']:,} of "
            f"{c['tokens']:,} |"
            for c in rv.cut
        ]
        lines.append("")
    lines += [
        "---",
        f"base `{rv.base_sha[:12]}` · head `{rv.head_sha[:12]}` · run `{rv.run_id}` · {cost_line(rv.spend)}",
        "",
    ]
    return "\n".join(lines)


def render_json(rv: PRReview) -> str:
    return json.dumps(rv.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _fingerprint(file: str, area: str, title: str) -> str:
    # Stable across runs and line shifts, so code-scanning tools match an alert to the one before it.
    return hashlib.sha256(f"{file}\0{area}\0{title.lower()}".encode()).hexdigest()[:32]


def sarif_log(rv: PRReview) -> dict[str, Any]:
    rules = [
        {
            "id": f"tierwise/{area}",
            "name": f"{area.capitalize()}Risk",
            "shortDescription": {"text": _AREA_TEXT[area]},
            "properties": {"tags": [area]},
        }
        for area in AREAS
    ]
    rules.append(INJECTION_RULE)
    results = []
    for f in rv.findings:
        props: dict[str, Any] = {
            "severity": f.severity,
            "area": f.area,
            "findingId": f.id,
            "source": f.source,
        }
        if f.area == "security":
            props["security-severity"] = SECURITY_SCORE[f.severity]
        message = f.title + (f": {f.detail}" if f.detail else "")
        rule_index = len(AREAS) if f.source == "rule" else AREAS.index(f.area)
        results.append(
            {
                "ruleId": rules[rule_index]["id"],
                "ruleIndex": rule_index,
                "level": LEVEL[f.severity],
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": quote(f.file), "uriBaseId": "SRCROOT"},
                            "region": {"startLine": max(1, f.line)},
                        }
                    }
                ],
                "partialFingerprints": {"tierwiseFinding/v1": _fingerprint(f.file, f.area, f.title)},
                "properties": props,
            }
        )
    root = Path(rv.repo).as_uri().rstrip("/") + "/"
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "semanticVersion": _version(),
                "rules": rules,
            }
        },
        "originalUriBaseIds": {"SRCROOT": {"uri": root}},
        # Warnings (files not reviewed, cut input) as notifications: code scanning shows an incomplete run.
        "invocations": [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {"level": "warning", "message": {"text": w}} for w in rv.warnings
                ],
            }
        ],
        "results": results,
        "properties": {
            "verdict": rv.verdict,
            "summary": rv.summary,
            "actions": rv.actions,
            "base": rv.base,
            "head": rv.head,
            "baseSha": rv.base_sha,
            "headSha": rv.head_sha,
            "runId": rv.run_id,
            "notReviewed": [f.path for f in rv.files if not f.reviewed],
            "cut": rv.cut,
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render_sarif(rv: PRReview) -> str:
    return json.dumps(sarif_log(rv), indent=2, ensure_ascii=False) + "\n"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tierwise")
    except PackageNotFoundError:
        return "0.0.0"


def formats(rv: PRReview) -> dict[str, Callable[[], str]]:
    """The renderers by extension, for ``reporting.write_outputs``."""
    return {
        "md": lambda: render_markdown(rv),
        "json": lambda: render_json(rv),
        "sarif": lambda: render_sarif(rv),
    }
