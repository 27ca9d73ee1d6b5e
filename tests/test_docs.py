"""The documentation's relative links resolve, and the README stays a landing page. Plain text
only: no TensorFlow is imported here."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", ROOT / "WORKSPACE.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

# [text](target) and ![alt](target); the target ends at whitespace or ")" (an optional title
# after a space is ignored). Reference-style links are not used in these files.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines of `text` with fenced code blocks blanked, and inline code spans (which may
    run over a line break) reduced to empty ones: a `[x](y)` inside backticks is not a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    prose = re.sub(r"`[^`]*`", lambda m: "``" + "\n" * m[0].count("\n"), "\n".join(lines))
    return prose.split("\n")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markdown links reduced to their text, lowercase, every
    character but letters, digits, spaces, `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file; repeated headings get -1, -2, ... as on
    GitHub. Headings inside fenced code are not headings."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [
        (number, match[1])
        for number, line in enumerate(prose_lines(text), 1)
        for match in LINK.finditer(line)
    ]


def broken(path: Path) -> list[str]:
    """`file:line: target (why)` for each relative link of `path` that does not resolve."""
    problems = []
    for number, target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{where} (no heading with that anchor)")
        elif anchor and resolved.suffix != ".md":
            problems.append(f"{where} (an anchor into a file that is not markdown)")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken(path) == []


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_link_checker_catches_what_it_should(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text(
        "# Many GPUs, many hosts\n\n## Compared with `keras.distillation.Distiller` (Keras ≥ 3.12)"
        "\n\n## Notes\n\n## Notes\n\n```\n# not a heading\n```\n"
    )
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](docs/b.md#many-gpus-many-hosts) [ok](docs/b.md#notes-1) [ok](#top)\n"
        "[ok](docs/b.md#compared-with-kerasdistillationdistiller-keras--312)\n"
        "[web](https://example.com/x#y) `[code](nowhere.md)`\n\n# Top\n\n"
        "`a span that runs\nover a line [code](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](docs/b.md#not-a-heading) [self](#nope)\n"
    )
    assert broken(page) == [
        "a.md:9: missing.md (no such file)",
        "a.md:9: docs/b.md#not-a-heading (no heading with that anchor)",
        "a.md:9: #nope (no heading with that anchor)",
    ]
