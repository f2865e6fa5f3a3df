"""Every citation in the project resolves inside the project (pure text, no JAX).

Code, configs and docs cite the published HMARL-SOC environment as `docs/reference.md §1.6` or
`docs/reference.md §4 D5`; a user of the package must be able to follow each one. These tests fail
when a file names a path outside the repository, when a cited section or defect is not a heading
of docs/reference.md, when a `§` cites nothing a reader can find, or when a relative Markdown link
points at a missing file or outside the repository.
"""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "reference.md"
SCOPE = ("jaxsoc", "docs", "eval", "train", "configs", "tests")
SUFFIXES = (".py", ".md", ".yaml", ".yml", ".toml", ".txt")
THIS = pathlib.Path(__file__).resolve()

# Paths that exist only on the machine the project was written on, never in a checkout.
OUTSIDE = re.compile(r"\.\./shared|shared/spec|shared/reference|hmarl_soc_reference|soc_v2\.md|/work/")
# Citations of a document the project does not contain ("reference §1.6", "reference D12", "spec D18").
DANGLING = re.compile(r"\b[Rr]eference (?:§|D\d)|\bspec (?:§|D\d)")
# "reference.md §1.9, §3.1", "[reference.md](reference.md) §4 D5", "reference.md §1.10/§2.2".
CITE = re.compile(r"reference\.md(?:\]\([^)]*\))?((?:\s*(?:,|/|and)?\s*§\s?\d+(?:\.\d+)*(?:\s+D\d+)?)+)")
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s+(D\d+))?")
# Another paper cited by its own section numbers (configs/iac.yaml, configs/maac.yaml).
OTHER_PAPER = re.compile(r"seed 00\d[^§\n]{0,12}§")


def project_files():
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for top in SCOPE:
        files += [p for p in sorted((REPO / top).rglob("*")) if p.suffix in SUFFIXES and p.is_file()]
    return [p for p in files if p.resolve() != THIS and "__pycache__" not in p.parts]


def reference_anchors():
    """Section numbers (`1`, `1.6`) and defect ids (`D5`) that are headings of docs/reference.md."""
    sections, defects = set(), set()
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"#{2,3} (\d+(?:\.\d+)*)\.? ", line)
        if m:
            sections.add(m.group(1))
        m = re.match(r"#### (D\d+)\. ", line)
        if m:
            defects.add(m.group(1))
    return sections, defects


def cited(text):
    """`(section, defect or None)` for each `reference.md §...` citation, and the text without them."""
    flat = re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)  # a citation may wrap onto a comment's next line
    out = []
    for m in CITE.finditer(flat):
        out += [(s, d or None) for s, d in SECTION.findall(m.group(1))]
    return out, CITE.sub(" ", flat)


def rel(p):
    return str(p.relative_to(REPO))


def test_reference_has_every_section_and_defect():
    sections, defects = reference_anchors()
    assert {"0", "1", "2", "3", "4"} <= sections
    assert {f"1.{i}" for i in range(1, 11)} <= sections and {f"2.{i}" for i in range(1, 9)} <= sections
    assert defects == {f"D{i}" for i in range(1, 27)}


def test_no_file_names_a_path_outside_the_repository():
    bad = [f"{rel(p)}:{i}: {line.strip()}" for p in project_files()
           for i, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not bad, "paths outside the repository:\n" + "\n".join(bad)


def test_no_citation_of_a_document_outside_the_project():
    bad = [f"{rel(p)}:{i}: {line.strip()}" for p in project_files() if p != REFERENCE
           for i, line in enumerate(p.read_text().splitlines(), 1) if DANGLING.search(line)]
    assert not bad, "cite docs/reference.md §N instead:\n" + "\n".join(bad)


def test_every_reference_citation_resolves():
    sections, defects = reference_anchors()
    bad, count = [], 0
    for p in project_files():
        text = p.read_text()
        if p == REFERENCE:  # its own cross-references are bare: "(§1.5)", "(§4.1 D2)"
            cites = [(s, d or None) for s, d in SECTION.findall(text)]
            rest = ""
        else:
            cites, rest = cited(text)
        count += len(cites)
        bad += [f"{rel(p)}: §{s} {d or ''}" for s, d in cites
                if s not in sections or (d is not None and d not in defects)]
        # any other "§" must belong to a citation a reader can follow
        stray = len(re.findall("§", rest)) - len(OTHER_PAPER.findall(rest))
        if stray:
            bad.append(f"{rel(p)}: {stray} '§' not part of a docs/reference.md citation")
    assert count > 40  # the citations exist (code, configs and docs all use them)
    assert not bad, "unresolved citations:\n" + "\n".join(bad)


@pytest.mark.parametrize("md", ["README.md"] + [f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))])
def test_markdown_links_stay_inside_the_repository(md):
    path = REPO / md
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        dest = (path.parent / target.split("#")[0]).resolve()
        assert REPO in dest.parents, f"{md} links outside the repository: {target}"
        assert dest.exists(), f"{md} links to a missing file: {target}"


# A project file named in the text (`jaxsoc/algos/ppo.py`, `configs/iql.yaml`, `docs/env.md`).
PROJECT_PATH = re.compile(r"(?<![\w/.-])((?:jaxsoc|eval|train|tests|configs|docs)/[\w/-]+\.(?:py|yaml|md))\b")
# Named but not the project's: examples a reader would create, and the original repository's
# own config (eval/bench_offpolicy.py times the original code in its `code/` folder).
NOT_OURS = {"configs/scenarios/my.yaml", "configs/scenarios/mine.yaml", "eval/x.py", "configs/default.yaml"}


def test_every_project_file_named_exists():
    # A file moved or renamed (jaxsoc/algos/hmarl.py became the package jaxsoc/algos/hmarl/)
    # leaves its old name in comments and docs unless something reads them.
    named, bad = 0, []
    for p in project_files():
        text = p.read_text()
        for m in PROJECT_PATH.finditer(text):
            named += 1
            if m.group(1) not in NOT_OURS and not (REPO / m.group(1)).exists():
                bad.append(f"{rel(p)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(1)}")
    assert named > 1000
    assert not bad, "files named that do not exist:\n" + "\n".join(bad)
