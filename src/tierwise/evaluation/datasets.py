"""Loaders for public outcome data: RouterBench CSVs and RouteLLM's MMLU CSVs, into ``Outcomes``.

The format of each file is recognised from its header. Blank scores are skipped and counted; files with
missing columns, one model only, or models that differ between files are refused with the reason.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from tierwise.errors import InputError
from tierwise.routing.outcomes import Outcomes, concat

# RouterBench prompts and responses run to tens of kB per cell.
csv.field_size_limit(1 << 30)

DATA_ENV = "TIERWISE_DATA_DIR"
_RB_COST = "|total_cost"
_RB_RESPONSE = "|model_response"
_RB_META = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def data_dir() -> Path:
    """The shared evaluation data: ``$TIERWISE_DATA_DIR``, else ``../shared/data`` beside the repository."""
    env = os.environ.get(DATA_ENV)
    candidates = [Path(env)] if env else []
    repo_root = Path(__file__).resolve().parents[3]
    candidates += [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    raise InputError(
        f"evaluation data not found (looked in {', '.join(str(c) for c in candidates)}): "
        f"set {DATA_ENV} to the directory holding outcomes/"
    )


def routerbench_files() -> list[Path]:
    return sorted((data_dir() / "outcomes" / "routerbench").glob("*.csv"))


def mmlu_files() -> list[Path]:
    return sorted((data_dir() / "outcomes" / "routellm" / "mmlu").glob("mmlu_*.csv"))


def load_outcomes(paths: Iterable[str | Path], *, strong: str | None = None) -> Outcomes:
    """Load and combine outcome files (a directory stands for the CSVs in it); all must name the same models.

    ``strong`` fixes the strong model of RouteLLM two-model data (default: the better one on these rows),
    so that evaluation data can be costed like the training data it is compared with.
    """
    files = _expand(paths)
    parts: list[Outcomes] = []
    kinds: set[str] = set()
    for path in files:
        header = _header(path)
        if any(col.endswith(_RB_COST) for col in header):
            parts.append(load_routerbench(path))
            kinds.add("routerbench")
        elif "prompt" in header:
            parts.append(_read_routellm(path))
            kinds.add("routellm")
        else:
            raise InputError(
                f"{path}: unrecognised outcome columns {header[:6]}: expected RouterBench "
                "(<model>, <model>|total_cost) or RouteLLM (prompt, <model>...) CSV"
            )
    if len(kinds) > 1:
        raise InputError("outcome files mix RouterBench and RouteLLM formats: load them separately")
    reference = parts[0]
    for path, part in zip(files[1:], parts[1:], strict=True):
        if set(part.models) != set(reference.models):
            raise InputError(
                f"{path} names models {sorted(part.models)}, "
                f"but {files[0]} names {sorted(reference.models)}: "
                "outcome files loaded together must name the same models"
            )
    combined = concat(parts)
    if kinds == {"routellm"}:
        combined = with_strong_share(combined, strong)
    return combined


def load_routerbench(path: str | Path) -> Outcomes:
    """A RouterBench CSV: ``<model>`` score, ``<model>|total_cost`` USD, ``<model>|model_response``."""
    path = Path(path)
    header, rows = _read_csv(path)
    models = [c for c in header if c not in _RB_META and "|" not in c]
    missing = [f"{m}{_RB_COST}" for m in models if f"{m}{_RB_COST}" not in header]
    if "prompt" not in header:
        missing.insert(0, "prompt")
    if missing:
        raise InputError(
            f"{path}: missing columns {missing}: a RouterBench file needs prompt, <model>, "
            "<model>|total_cost for every model"
        )
    if len(models) < 2:
        raise InputError(f"{path}: names {len(models)} model(s) {models}: routing needs at least two")
    has_resp = all(f"{m}{_RB_RESPONSE}" in header for m in models)
    prompts, groups, scores, costs, responses = [], [], [], [], []
    skipped = 0
    for line, row in enumerate(rows, start=2):
        try:
            s = [_score(row[m]) for m in models]
            c = [_float(row[f"{m}{_RB_COST}"]) for m in models]
        except ValueError as exc:
            raise InputError(f"{path}:{line}: {exc}") from None
        if any(v is None for v in s) or any(v is None for v in c):
            skipped += 1  # RouterBench ARC has a few blank scores: such a row cannot be compared
            continue
        prompts.append(_prompt_text(row["prompt"]))
        groups.append(row.get("eval_name") or path.stem)
        scores.append(s)
        costs.append(c)
        if has_resp:
            responses.append(tuple(row[f"{m}{_RB_RESPONSE}"] for m in models))
    if not prompts:
        raise InputError(f"{path}: no rows with a score for every model ({skipped} skipped)")
    return Outcomes(
        prompts=tuple(prompts),
        models=tuple(models),
        scores=np.asarray(scores, dtype=np.float64),
        costs=np.asarray(costs, dtype=np.float64),
        groups=tuple(groups),
        responses=tuple(responses) if has_resp else None,
        cost_unit="usd",
        sources=(str(path),),
        skipped=skipped,
    )


def load_routellm(paths: Iterable[str | Path], *, strong: str | None = None) -> Outcomes:
    """RouteLLM MMLU CSVs (``prompt`` and True/False per model), without RouteLLM's contaminated prompts.

    There are no prices: cost is 1 for a call to the strong model and 0 for the weak one, so a router's mean
    cost is its share of strong calls, as RouteLLM reports it.
    """
    return with_strong_share(concat([_read_routellm(p) for p in _expand(paths)]), strong)


def with_strong_share(data: Outcomes, strong: str | None = None) -> Outcomes:
    """Cost the two models of RouteLLM-style data as the share of strong calls."""
    if len(data.models) != 2:
        raise InputError(f"RouteLLM outcomes need exactly two models, found {list(data.models)}")
    s = data.model_index(strong) if strong is not None else data.strongest()
    costs = np.zeros_like(data.scores)
    costs[:, s] = 1.0
    return replace(data, costs=costs, cost_unit="strong_share", meta={**data.meta, "strong": data.models[s]})


def _read_routellm(path: Path) -> Outcomes:
    header, rows = _read_csv(path)
    if "prompt" not in header:
        raise InputError(
            f"{path}: missing column 'prompt': a RouteLLM file has prompt and one column per model"
        )
    models = [c for c in header if c and c != "prompt" and not c.startswith("Unnamed")]
    if len(models) != 2:
        raise InputError(f"{path}: RouteLLM outcomes need exactly two model columns, found {models}")
    contaminated = _contaminated(path.parent)
    prompts, scores = [], []
    skipped = excluded = 0
    for line, row in enumerate(rows, start=2):
        if row["prompt"] in contaminated:
            excluded += 1
            continue
        try:
            s = [_bool_score(row[m]) for m in models]
        except ValueError as exc:
            raise InputError(f"{path}:{line}: {exc}") from None
        if any(v is None for v in s):
            skipped += 1
            continue
        prompts.append(row["prompt"])
        scores.append(s)
    if not prompts:
        raise InputError(f"{path}: no usable rows ({skipped} blank, {excluded} contaminated)")
    subject = path.stem.removeprefix("mmlu_")
    arr = np.asarray(scores, dtype=np.float64)
    return Outcomes(
        prompts=tuple(prompts),
        models=tuple(models),
        scores=arr,
        costs=np.zeros_like(arr),
        groups=(subject,) * len(prompts),
        cost_unit="strong_share",
        sources=(str(path),),
        skipped=skipped,
        excluded=excluded,
    )


def _contaminated(directory: Path) -> frozenset[str]:
    """RouteLLM drops eval prompts that leaked into its router training data; so do we."""
    path = directory / "contaminated_prompts.jsonl"
    if not path.is_file():
        return frozenset()
    out = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.add(json.loads(line)["eval_prompt"])
    return frozenset(out)


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise InputError(f"{path}: directory holds no .csv outcome files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"outcome file not found: {path}")
    if not files:
        raise InputError("no outcome files given: pass --outcomes PATH (a CSV file or a directory of them)")
    return files


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise InputError(f"{path}: empty file") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV ({exc})") from None


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    if not header:
        raise InputError(f"{path}: empty file")
    return header, rows


def _float(value: str | None) -> float | None:
    text = (value or "").strip()
    if not text or text.lower() == "nan":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def _score(value: str | None) -> float | None:
    v = _float(value)
    if v is not None and not 0.0 <= v <= 1.0:
        raise ValueError(f"score {v} is outside [0, 1]")
    return v


def _bool_score(value: str | None) -> float | None:
    text = (value or "").strip().lower()
    if not text or text == "nan":
        return None
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise ValueError(f"score {value!r} is not True/False")


def _prompt_text(raw: str) -> str:
    """RouterBench stores prompts as a Python list literal of turns (``"['...']"``); keep the text."""
    text = raw.strip()
    if len(text) >= 4 and text[0] == "[" and text[-1] == "]" and text[1] in "'\"" and text[-2] == text[1]:
        try:
            turns = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return raw
        if isinstance(turns, list) and all(isinstance(t, str) for t in turns):
            return "\n".join(turns)
    return raw
