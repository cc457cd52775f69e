"""include/exclude follow gitignore: a table of (pattern, path, taken?) that git itself
agrees with, case folding as a property of the source, and refusals that name the fix."""

from __future__ import annotations

import shutil
import subprocess
from typing import ClassVar

import pytest
from pydantic import ValidationError

from ingestd.plugin import FilterOptions
from ingestd.plugin.globs import compile_patterns, problem

# (pattern, path, matches): the README's examples and the corners of the dialect
TABLE = [
    # `*` stops at `/`; a pattern without `/` matches a name at any depth
    ("*.pdf", "c.pdf", True),
    ("*.pdf", "a/b/c.pdf", True),
    ("*.pdf", "a/b/c.pdf.txt", False),
    ("*", "a/b/c.pdf", True),
    ("c.pdf", "a/b/c.pdf", True),
    ("b", "a/b/c.pdf", True),  # a folder named b: everything inside it
    ("a/b", "x/a/b/c.pdf", False),  # a `/` in the middle anchors to the root
    # a `/` in the middle anchors; `*` in it still stops at `/`
    ("docs/*.md", "docs/x.md", True),
    ("docs/*.md", "docs/sub/deep.md", False),
    ("docs/*.md", "x/docs/x.md", False),
    ("docs/*", "docs/sub/deep.md", True),  # docs/sub is matched, and with it what it holds
    ("/top.txt", "top.txt", True),
    ("/top.txt", "a/top.txt", False),
    # `**` as a whole segment spans zero or more folders
    ("a/**/c.pdf", "a/c.pdf", True),
    ("a/**/c.pdf", "a/b/c.pdf", True),
    ("a/**/c.pdf", "a/b/d/c.pdf", True),
    ("a/**/c.pdf", "x/a/c.pdf", False),
    ("**/*.pdf", "c.pdf", True),
    ("**/*.pdf", "a/b/c.pdf", True),
    ("**/tmp/*", "tmp/x", True),
    ("**/tmp/*", "a/tmp/x", True),
    ("Archive/**", "Archive/x.pdf", True),
    ("Archive/**", "Archive/y/z.pdf", True),
    ("Archive/**", "Archive", False),
    ("Archive/**", "a/Archive/x.pdf", False),
    ("**", "a/b/c", True),
    # elsewhere `**` is a plain `*`
    ("a**.pdf", "ab.pdf", True),
    ("a**.pdf", "a/b.pdf", False),
    ("x/**b", "x/ab", True),
    ("x/**b", "x/a/b", False),
    # a trailing `/` matches folders only
    ("tmp/", "tmp", False),
    ("tmp/", "tmp/x", True),
    ("tmp/", "a/tmp/b/x", True),
    ("tmp", "tmp", True),
    ("a/b/", "a/b/c", True),
    ("a/b/", "a/b", False),
    # `?`, sets, escapes
    ("?.txt", "a.txt", True),
    ("?.txt", "ab.txt", False),
    ("a?b", "a/b", False),
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[!abc].txt", "d.txt", True),
    ("[^abc].txt", "a.txt", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[]]x", "]x", True),
    ("[!]]x", "]x", False),
    ("[a-]x", "-x", True),
    ("[[:digit:]]*.csv", "2024.csv", True),
    ("[[:digit:]]*.csv", "q4.csv", False),
    ("[[:upper:]][[:lower:]]", "Ab", True),
    ("[[:space:]]x", " x", True),
    ("a[/]b", "a/b", False),
    ("a[!x]b", "a/b", False),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("\\#x", "#x", True),
    ("\\!x", "!x", True),
    ("a\\ ", "a ", True),
    ("sp ace.txt", "sp ace.txt", True),
    ("f[o]o.txt", "foo.txt", True),
    # case matters unless the source says otherwise
    ("*.pdf", "Scan.PDF", False),
    ("Archive/**", "archive/x", False),
]


def matches(pattern: str, path: str, ignore_case: bool = False) -> bool:
    return compile_patterns([pattern], ignore_case)(path)


@pytest.mark.parametrize(("pattern", "path", "expected"), TABLE)
def test_the_table(pattern, path, expected):
    assert matches(pattern, path) is expected


def git_says(tmp_path, rows, ignore_case: bool = False) -> list[bool]:
    """`git check-ignore` with each pattern as the whole .gitignore: git's own matcher."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    out = []
    for pattern, path in rows:
        (tmp_path / ".gitignore").write_text(pattern + "\n")
        done = subprocess.run(["git", "-c", f"core.ignorecase={str(ignore_case).lower()}", "check-ignore",
                               "--no-index", "-q", "--", path], cwd=tmp_path, capture_output=True, timeout=30)
        assert done.returncode in (0, 1), done.stderr
        out.append(done.returncode == 0)
    return out


@pytest.mark.skipif(shutil.which("git") is None, reason="git is the oracle")
def test_git_agrees_with_the_table(tmp_path):
    assert git_says(tmp_path, [(p, path) for p, path, _ in TABLE]) == [e for _, _, e in TABLE]


FOLDED = [("*.txt", "Memo.TXT", True), ("**/*.pdf", "a/Scan.PDF", True), ("Archive/**", "archive/x", True),
          ("[a-c]x", "BX", True), ("a/", "A/b", True), ("memo.txt", "notes.txt", False)]


@pytest.mark.parametrize(("pattern", "path", "expected"), FOLDED)
def test_case_folding(pattern, path, expected):
    assert matches(pattern, path, ignore_case=True) is expected


@pytest.mark.skipif(shutil.which("git") is None, reason="git is the oracle")
def test_git_agrees_on_case_folding(tmp_path):
    assert git_says(tmp_path, [(p, path) for p, path, _ in FOLDED], ignore_case=True) == [e for _, _, e in FOLDED]


def test_case_is_a_property_of_the_option_model():
    class Folding(FilterOptions):
        glob_ignore_case: ClassVar[bool] = True

    s3_like = FilterOptions(include=["**/*.txt"], exclude=["Archive/**"])
    folding = Folding(include=["**/*.txt"], exclude=["Archive/**"])
    assert not s3_like.wanted("Memo.TXT") and folding.wanted("Memo.TXT")
    assert s3_like.wanted("archive/a.txt") and not folding.wanted("archive/a.txt")


def test_include_and_exclude_together():
    opts = FilterOptions(include=["**/*.txt", "docs/"], exclude=["tmp/", "*.bak.txt"])
    taken = [p for p in ("a.txt", "x/tmp/a.txt", "docs/b.csv", "c.bak.txt", "d.csv", "docs/tmp/e.txt")
             if opts.wanted(p)]
    assert taken == ["a.txt", "docs/b.csv"]
    assert FilterOptions().wanted("any/thing") and not FilterOptions(include=[]).wanted("x")


def test_patterns_are_compiled_once(monkeypatch):
    import ingestd.plugin.globs as globs

    calls = []
    real = globs.compile_patterns
    monkeypatch.setattr(globs, "compile_patterns", lambda *a: calls.append(a) or real(*a))
    opts = FilterOptions(include=["**/*.txt"], exclude=["tmp/"])
    for i in range(100):
        opts.wanted(f"k/{i}.txt")
    assert len(calls) == 2


@pytest.mark.parametrize(("pattern", "hint"), [
    ("", "matches nothing"),
    ("/", "matches nothing"),
    ("#notes", "'\\#'"),
    ("!keep.pdf", "exclude"),
    ("*.pdf ", "'\\ '"),
    ("[abc", "never closed"),
    ("a\\", "lone"),
    ("[[:alphabet:]]", "not a character class"),
])
def test_unusable_patterns_are_refused_with_the_fix(pattern, hint):
    assert hint in (problem(pattern) or "")
    with pytest.raises(ValidationError) as info:
        FilterOptions(exclude=["ok", pattern])
    assert info.value.errors()[0]["loc"] == ("exclude", 1)


ATOMS = ["a", "b", "A", "x", ".", " ", "/", "*", "**", "?", "[ab]", "[!a]", "[a-c]", "[c-a]", "[]a]", "[a-]",
         "[[:alpha:]]", "[[:upper:]]", "[[:a]b:]]", "[!/]", "[\\]]", "\\*", "\\/", "\\\\"]
PATHS = ["a", "b", "a/b", "b/a", "a/b/a", "x/a", "ab", "ba", "a/x/b", "*", "a/*", ".a", "a.b", "aa/bb", "]", "c",
         "a/b/c/d", "A/b", "-", "a/-", "\\", "a\\b", "a b", "x/ /b"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is the oracle")
@pytest.mark.parametrize("ignore_case", [False, True])
def test_git_agrees_on_generated_patterns(tmp_path, ignore_case):
    """Random patterns from the dialect's pieces, every path above, against git."""
    import random

    rng = random.Random(20240)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    disagree, compared = [], 0
    while compared < 3000:
        pattern = "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 6)))
        if problem(pattern):
            continue
        (tmp_path / ".gitignore").write_text(pattern + "\n")
        done = subprocess.run(
            ["git", "-c", f"core.ignorecase={str(ignore_case).lower()}", "check-ignore", "--no-index", "--stdin",
             "-z", "-n", "-v"], cwd=tmp_path, input="\0".join(PATHS) + "\0", capture_output=True, text=True,
            timeout=30)
        fields = done.stdout.split("\0")
        ours = compile_patterns([pattern], ignore_case)
        for k in range(0, len(fields) - 1, 4):  # source, line, pattern, path; source "" = no match
            path, git = fields[k + 3], fields[k] != ""
            compared += 1
            if ours(path) != git:
                disagree.append((pattern, path, git))
    assert compared >= 3000 and not disagree[:10]
