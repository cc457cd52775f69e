"""Include/exclude patterns in gitignore's dialect, compiled to one regex per list.

gitignore is the glob dialect most operators already know, and the only common one
where `**` spans zero or more folders (`a/**/c.pdf` takes `a/c.pdf`) while `*` stops at
`/`. Its rules, as git's own `wildmatch` applies them to a path relative to the source:

- `*` matches within one path segment, `?` one character but `/`, `[a-z]`, `[!a-z]`,
  `[[:digit:]]` a character of a set (never `/`), `\\x` the character x itself.
- `**` spans folders where it is a whole segment: `**/x` (x at any depth), `x/**`
  (everything inside x), `a/**/b` (zero or more folders between); elsewhere it is `*`.
- A pattern with no `/` but a trailing one matches a name at any depth; any other `/`
  anchors it to the source's root (a leading `/` only anchors).
- A trailing `/` matches folders only. A pattern that matches a folder matches
  everything inside it: `exclude = ["tmp"]` leaves out `tmp/a` and `x/tmp/b/c`.

A pattern is one gitignore line without its file syntax: comments (`#`), negation (`!`)
and trailing-space trimming are refused with the way to write it, never guessed at.
Matching is on characters, not bytes: `?` takes one `é`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_POSIX = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9",
    "graph": "\\x21-\\x7e", "lower": "a-z", "print": "\\x20-\\x7e", "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v", "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}
_CLASS_SPECIAL = set("\\]^-[")


def problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable gitignore pattern, with the fix; None when it is."""
    if not pattern.strip("/"):
        return "an empty pattern (or '/' alone) matches nothing; write '**' for everything"
    if pattern[0] in "#!":
        what = "a comment" if pattern[0] == "#" else "negation, which include/exclude do not use (put it in exclude)"
        return f"{pattern[0]!r} at the start means {what} in gitignore; write '\\{pattern[0]}' for the character"
    if pattern.endswith(" ") and not pattern.endswith("\\ "):
        return "ends in a space, which gitignore drops; write '\\ ' to match a trailing space"
    try:
        _regex(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def compile_patterns(patterns: Sequence[str], ignore_case: bool = False) -> Callable[[str], bool]:
    """One predicate for a list of patterns: True when any matches the path or a folder
    it lies in. Compiled once per list, so the per-key cost is one regex search."""
    if not patterns:
        return lambda path: False
    if "**" in patterns:
        return lambda path: True
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    search = re.compile("|".join(f"(?:{_regex(p)})" for p in patterns), flags).search
    return lambda path: search(path) is not None


def _regex(pattern: str) -> str:
    """The pattern as a regex searched for in a relative path."""
    dir_only = pattern.endswith("/")
    body = pattern[:-1] if dir_only else pattern
    anchored = "/" in body
    body = body.removeprefix("/")
    start = r"\A" if anchored else r"(?:\A|/)"
    end = "/" if dir_only else r"(?:/|\Z)"  # a folder it names, or (not dir-only) the path itself
    return start + _translate(body) + end


def _translate(body: str) -> str:
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 == n:
                raise ValueError("ends in a lone '\\'; write '\\\\' for a backslash")
            out.append(re.escape(body[i + 1]))
            i += 2
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            text, i = _char_class(body, i)
            out.append(text)
        elif c == "*":
            i = _stars(body, i, out)
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _stars(body: str, i: int, out: list[str]) -> int:
    """Translate the run of `*` at `i`; return the index after it (and its slash)."""
    j = i
    while j < len(body) and body[j] == "*":
        j += 1
    slash = 1 if body.startswith("/", j) else 2 if body.startswith("\\/", j) else 0
    whole_segment = (i == 0 or body[i - 1] == "/") and (j == len(body) or slash)
    if j - i < 2 or not whole_segment:
        out.append("[^/]*")
        return j
    if j == len(body) or slash == 2:
        out.append(".*")  # `**` alone, `x/**`: everything (inside x); before `\/`, no zero-folder case
        return j
    out.append("(?:.*/)?")  # `**/`: zero or more folders
    return j + slash


def _char_class(body: str, start: int) -> tuple[str, int]:
    """wildmatch's `[...]`: `!` or `^` negates, `]` first is literal, `a-z` ranges,
    `[:name:]` POSIX classes (ASCII), `\\` escapes; it never matches `/`."""
    i = start + 1
    negated = i < len(body) and body[i] in "!^"
    if negated:
        i += 1
    parts: list[str] = []
    first = True
    prev: str | None = None  # the last single character, a possible range start
    while True:
        if i >= len(body):
            raise ValueError(f"the '[' at position {start + 1} is never closed; write '\\[' for the character")
        c = body[i]
        if c == "]" and not first:
            break
        first = False
        if c == "\\":
            if i + 1 >= len(body):
                raise ValueError(f"the '[' at position {start + 1} is never closed")
            c = body[i + 1]
            i += 1
        elif c == "-" and prev is not None and i + 1 < len(body) and body[i + 1] != "]":
            i, end = i + 1, body[i + 1]
            if end == "\\":
                if i + 1 >= len(body):
                    raise ValueError(f"the '[' at position {start + 1} is never closed")
                i, end = i + 1, body[i + 1]
            if prev <= end:  # a reversed range adds nothing: git keeps only its first character
                parts[-1] = f"{_class_char(prev)}-{_class_char(end)}"
            prev = None
            i += 1
            continue
        elif c == "[" and body.startswith(":", i + 1):
            close = body.find("]", i + 2)  # wildmatch takes the first `]`: a class if `:` precedes it
            if close > i + 2 and body[close - 1] == ":":
                name = body[i + 2:close - 1]
                if name not in _POSIX:
                    raise ValueError(f"[:{name}:] is not a character class (known: {', '.join(_POSIX)})")
                parts.append(_POSIX[name])
                prev = None
                i = close + 1
                continue
        parts.append(_class_char(c))
        prev = c
        i += 1
    members = "".join(parts)
    if negated:
        return f"[^/{members}]", i + 1
    return (f"(?!/)[{members}]" if members else "(?!)"), i + 1


def _class_char(c: str) -> str:
    return "\\" + c if c in _CLASS_SPECIAL else c
