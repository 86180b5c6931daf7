"""The hook table in docs/writing-backends.md is generated from the hooks' docstrings.

Run ``python -m tests.test_hook_docs`` to rewrite the table after changing a hook; the test
fails while the page and the docstrings disagree, so the page cannot drift.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from imagehub.manager import HOOKS, Capability, ImageManager

PAGE = Path(__file__).resolve().parents[1] / "docs" / "writing-backends.md"
START, END = "<!-- hook-table:start -->", "<!-- hook-table:end -->"
FIELDS = ("Returns", "Raises", "Threads")


def hook_rows() -> list[tuple[str, str]]:
    """(capability, hook name) in the order the page lists them."""
    rows = [("LIST", "_list"), ("GET", "_get")]
    rows += [(cap.name or "", hook) for cap, hooks in HOOKS.items()
             if cap is not Capability.LIST for hook in hooks]
    return rows


def docstring_fields(doc: str) -> dict[str, str]:
    """The "Returns:", "Raises:" and "Threads:" paragraphs of a hook docstring."""
    fields: dict[str, str] = {}
    current: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        head = re.match(rf"({'|'.join(FIELDS)}):\s*(.*)", line)
        if head:
            current = head.group(1)
            fields[current] = head.group(2)
        elif current and line.strip():
            fields[current] += " " + line.strip()
        else:
            current = None
    return fields


def signature(hook: str) -> str:
    sig = inspect.signature(getattr(ImageManager, hook))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values()
                       if p.name != "self")
    text = f"{hook}({params}) -> {sig.return_annotation}".replace("builtins.", "")
    # A "|" inside a table cell must be escaped, even inside code.
    return "`" + text.replace("|", "\\|") + "`"


def hook_table() -> str:
    lines = ["| Capability | Hook | Returns | Must raise | Threads |", "|---|---|---|---|---|"]
    for cap, hook in hook_rows():
        doc = inspect.getdoc(getattr(ImageManager, hook)) or ""
        fields = docstring_fields(doc)
        missing = [f for f in FIELDS if not fields.get(f)]
        assert not missing, f"{hook}'s docstring lacks {', '.join(missing)}"
        cells = [cap, signature(hook), *(fields[f].replace("|", "\\|") for f in FIELDS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_table(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


def test_every_hook_documents_returns_raises_and_threads() -> None:
    for _cap, hook in hook_rows():
        fields = docstring_fields(inspect.getdoc(getattr(ImageManager, hook)) or "")
        assert all(fields.get(f) for f in FIELDS), hook


def test_every_capability_hook_is_in_the_table() -> None:
    listed = {hook for _cap, hook in hook_rows()}
    assert {h for hooks in HOOKS.values() for h in hooks} <= listed


def test_page_table_matches_the_docstrings() -> None:
    assert page_table(PAGE.read_text()) == hook_table(), (
        "docs/writing-backends.md's hook table is stale: run python -m tests.test_hook_docs")


if __name__ == "__main__":
    text = PAGE.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    new = f"{text[:start]}\n{hook_table()}\n{text[end:]}"
    PAGE.write_text(new)
    sys.stdout.write("hook table rewritten\n" if new != text else "hook table up to date\n")
