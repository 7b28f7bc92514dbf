"""Sources for the research system: load text, Markdown, HTML and PDF files, split them into passages,
and check that a quoted span occurs verbatim (whitespace-normalized) in its source.

``load_corpus(directory)`` reads them before a run opens, so a bad ``--sources`` costs no run record."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from tierwise.errors import InputError

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MAX_SOURCE_BYTES = 5_000_000  # a bigger file is almost certainly not a document to read whole
PASSAGE_CHARS = 700  # about a paragraph: small enough to quote, big enough to carry a claim

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Whitespace-normalized text: what a citation must match (line breaks and indentation differ)."""
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class Passage:
    id: str  # "<source path>#<n>", n from 1
    n: int
    text: str


@dataclass(slots=True)
class Source:
    path: str  # relative to the sources directory, POSIX style: what citations name
    kind: str  # text | markdown | html | pdf
    text: str
    passages: list[Passage] = field(default_factory=list)
    _norm: str = ""

    def contains(self, quote: str) -> bool:
        """True when ``quote`` occurs verbatim in this source, ignoring differences in whitespace."""
        q = normalize(quote)
        if len(q) < 3:  # "a" or "" occurs everywhere and proves nothing
            return False
        if not self._norm:
            self._norm = normalize(self.text)
        return q in self._norm


class _TextOfHTML(HTMLParser):
    """The visible text of an HTML page; script, style and similar blocks are dropped."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
         "blockquote", "table", "ul", "ol", "hr", "title", "header", "footer", "main", "dd", "dt"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    # Collapse runs of spaces inside lines but keep paragraph breaks, which the splitter needs.
    text = "".join(parser.parts)
    paragraphs = (normalize(p) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def pdf_available() -> bool:
    return importlib.util.find_spec("pypdf") is not None


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def split_passages(source_path: str, text: str, size: int = PASSAGE_CHARS) -> list[Passage]:
    """Paragraphs, with long ones cut at sentence ends near ``size`` characters."""
    chunks: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = normalize(para)
        while len(para) > size:
            cut = max(para.rfind(". ", 0, size), para.rfind("? ", 0, size), para.rfind("! ", 0, size))
            cut = cut + 1 if cut > size // 3 else size
            chunks.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            chunks.append(para)
    return [Passage(f"{source_path}#{i}", i, c) for i, c in enumerate(chunks, 1)]


def _kind(suffix: str) -> str:
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    return "markdown" if suffix in {".md", ".markdown"} else "text"


def load_sources(directory: str | Path) -> tuple[list[Source], list[str]]:
    """Every supported file under ``directory`` (sorted), and warnings for what was skipped.

    Raises InputError when the directory is missing or holds no readable source at all.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InputError(f"sources directory {str(root)!r} does not exist or is not a directory")
    sources: list[Source] = []
    warnings: list[str] = []
    has_pdf = pdf_available()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden files and directories (.git, .DS_Store) are not sources
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED:
            warnings.append(f"skipped {rel}: unsupported type (use .txt, .md, .html or .pdf)")
            continue
        if suffix in PDF_SUFFIXES and not has_pdf:
            warnings.append(f"skipped {rel}: reading PDF needs pypdf (pip install pypdf)")
            continue
        try:
            if path.stat().st_size > MAX_SOURCE_BYTES:
                warnings.append(f"skipped {rel}: larger than {MAX_SOURCE_BYTES // 1_000_000} MB")
                continue
            if suffix in PDF_SUFFIXES:
                text = pdf_text(path)
            else:
                raw = path.read_text(encoding="utf-8", errors="replace")
                text = html_text(raw) if suffix in HTML_SUFFIXES else raw
        except Exception as exc:  # any unreadable file (OS error, PDF parser error) is a warning
            warnings.append(f"skipped {rel}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        passages = split_passages(rel, text)
        if not passages:
            warnings.append(f"skipped {rel}: no text")
            continue
        sources.append(Source(rel, _kind(suffix), text, passages))
    if not sources:
        detail = f" ({'; '.join(warnings[:3])})" if warnings else ""
        raise InputError(f"no readable sources in {str(root)!r}{detail}: add .txt, .md, .html or .pdf files")
    return sources, warnings


@dataclass(frozen=True, slots=True)
class Corpus:
    """The sources of one question, loaded and checked, with a warning for each file that was skipped."""

    root: str
    sources: tuple[Source, ...]
    warnings: tuple[str, ...] = ()

    def by_path(self) -> dict[str, Source]:
        return {s.path: s for s in self.sources}


def load_corpus(directory: str | Path) -> Corpus:
    """``load_sources`` as one value: what ``research.run`` takes (InputError when nothing is readable)."""
    sources, warnings = load_sources(directory)
    return Corpus(str(directory), tuple(sources), tuple(warnings))
