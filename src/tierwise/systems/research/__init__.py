"""Research + synthesis: answer a question from a folder of sources, with citations that are checked.

Gathering (one call per source), classifying and the synthesis are described by kind and stakes; the
router decides their tiers (by default mini, nano and large). A ``tierwise.toml`` can move them.

    corpus = load_corpus("sources/")
    async with Session() as s, s.run(SYSTEM, run_label(q), metadata=run_metadata(corpus)) as scope:
        result = await run(scope, corpus, q)
"""

from tierwise.systems.research.pipeline import check_citations, check_question, run, run_label, run_metadata
from tierwise.systems.research.sources import (
    Corpus,
    Passage,
    Source,
    html_text,
    load_corpus,
    load_sources,
    normalize,
    split_passages,
)
from tierwise.systems.research.types import (
    SYSTEM,
    Citation,
    Evidence,
    Finding,
    FoundEvidence,
    ResearchResult,
    Synthesis,
    evidence_model,
    synthesis_model,
)

__all__ = [
    "SYSTEM",
    "Citation",
    "Corpus",
    "Evidence",
    "Finding",
    "FoundEvidence",
    "Passage",
    "ResearchResult",
    "Source",
    "Synthesis",
    "check_citations",
    "check_question",
    "evidence_model",
    "html_text",
    "load_corpus",
    "load_sources",
    "normalize",
    "run",
    "run_label",
    "run_metadata",
    "split_passages",
    "synthesis_model",
]
