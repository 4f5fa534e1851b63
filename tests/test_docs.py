"""The README and docs/ stay true to each other and to the config: every relative link and
``#anchor`` resolves (the file exists; the anchor is a heading's GitHub slug in the target file),
every config key the docs name exists in the full config, and every key this project adds is
documented somewhere in docs/."""
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from conftest import REPO
from textrefiner.config import get_cfg, project_keys

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]

#: keys of the upstream releases the docs name as such (not keys of this project's config)
UPSTREAM_KEYS = {"TRAINER.MODAL"}  # PromptKD's release; ours is TRAINER.PROMPTKD.MODAL

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
KEY_PART = r"(?:\.[A-Z][A-Z0-9_]*)+"


def prose_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading's slug in ``path``, with GitHub's -1, -2, ... for repeated ones."""
    seen: Dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> Iterator[Tuple[int, str]]:
    for number, line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                yield number, target


def test_every_page_is_found():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"README.md", "protocols.md", "datasets.md", "sweeps-and-tables.md", "interop.md",
            "config-keys.md", "trainers.md", "testbed.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(page):
    broken: List[str] = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        target_path = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(REPO)}:{number}: {target}"
        if not target_path.exists():
            broken.append(f"{where} (no such file)")
        elif anchor:
            if target_path.is_dir():
                broken.append(f"{where} (an anchor into a folder)")
            elif anchor not in anchors(target_path):
                broken.append(f"{where} (no heading with that anchor in {target_path.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def every_page_links_somewhere():
    linked = set()
    for page in PAGES:
        for _, target in relative_links(page):
            file_part = target.partition("#")[0]
            if file_part:
                linked.add((page.parent / file_part).resolve())
    return linked


def test_every_docs_page_is_linked_from_the_index():
    index = {(DOCS / t.partition("#")[0]).resolve() for _, t in relative_links(DOCS / "README.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.resolve() not in index]
    assert not missing, f"docs/README.md does not link {missing}"
    assert (DOCS / "README.md").resolve() in every_page_links_somewhere()


def config_key_names(cfg) -> Set[str]:
    """Every key and every node of ``cfg`` as a dotted name."""
    names = set()

    def walk(node, prefix):
        for name, value in node.items():
            names.add(prefix + name)
            if hasattr(value, "items"):
                walk(value, f"{prefix}{name}.")

    walk(cfg, "")
    return names


def named_keys(path: Path, tops: Set[str]) -> Iterator[Tuple[int, str]]:
    """The config keys (``TRAINER.COOP.N_CTX``, ``DATASET.NUM_SHOTS``, ...) named in ``path``, code included."""
    pattern = re.compile(r"(?<![A-Za-z0-9_.])(?:" + "|".join(sorted(tops, key=len, reverse=True)) + ")"
                         + KEY_PART + r"(?![A-Za-z0-9_])")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in pattern.finditer(line):
            yield number, match.group(0)


def test_every_named_config_key_exists():
    cfg = get_cfg()
    known = config_key_names(cfg)
    tops = {name for name, value in cfg.items() if hasattr(value, "items")}
    unknown = [f"{page.relative_to(REPO)}:{number}: {key}" for page in PAGES for number, key in named_keys(page, tops)
               if key not in known and key not in UPSTREAM_KEYS]
    assert not unknown, "config keys the docs name that the config does not have:\n" + "\n".join(unknown)


def test_every_project_key_is_documented():
    text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.glob("*.md"))
    ours = {name for name in config_key_names(project_keys())
            if not hasattr(_get(project_keys(), name), "items")}
    undocumented = sorted(key for key in ours if not re.search(re.escape(key) + r"(?![A-Za-z0-9_])", text))
    assert not undocumented, f"keys this project adds that no page of docs/ names: {undocumented}"


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_slugs_follow_github():
    assert github_slug("Result tables: `parse_test_res.py`") == "result-tables-parse_test_respy"
    assert github_slug("Use inside your own CoOp / MaPLe / PromptKD checkout") == \
        "use-inside-your-own-coop--maple--promptkd-checkout"
    assert github_slug("What TextRefiner computes (defaults = the authors' release)") == \
        "what-textrefiner-computes-defaults--the-authors-release"
