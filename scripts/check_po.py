#!/usr/bin/env python3
"""Check the book's translations: the template is current and every language is complete.

    python3 scripts/check_po.py              # check book/po, print statistics
    python3 scripts/check_po.py --update     # re-extract messages.pot, merge it into each .po
    python3 scripts/check_po.py --built book/book   # also compare the built languages' pages

The book is translated with gettext (mdbook-i18n-helpers): `book/po/messages.pot` holds
every message of the English book, `book/po/LANG.po` one language. The check fails (exit 1)
when

- `messages.pot` is stale: extracting the English again (mdbook with the `mdbook-xgettext`
  renderer, into a temporary folder) gives a different set of messages;
- a `LANG.po` lacks a message of the template, or has one untranslated or fuzzy.

With `--built SITE` (the English build, each translation built into `SITE/LANG`), every
translated page must have the structure of its English page: the same heading ids, tables and
rows, images, and the same text in every code block and transcript. A translation that breaks
the Markdown (a table cell that turns into a heading, say) or changes code fails here.

A message that came from a code block (a comment or a string in it) is "translated" to itself:
code stays as it is in every language.

After the English changes: run with `--update`, translate what it reports as untranslated or
fuzzy in `book/po/LANG.po`, and run the check again. `--update` keeps the translations of
unchanged messages, adds new ones untranslated, and marks removed ones obsolete (`#~`); it
needs no gettext tools, only the `polib` package and the mdBook tools in `.tools/bin`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

try:
    import polib
except ImportError:  # an older .venv, made before polib joined requirements-dev.txt
    sys.exit("check_po: needs polib: .venv/bin/pip install -r scripts/requirements-dev.txt")

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
PO_DIR = BOOK / "po"
POT = PO_DIR / "messages.pot"
# granularity 0: no line numbers in the references, so that an edit elsewhere in a chapter
# does not change every message after it.
XGETTEXT = {"xgettext": {"pot-file": "messages.pot", "granularity": 0}}


def extract(tools: Path, dest: Path) -> Path:
    """Extract the English book's messages into dest/messages.pot and return that path."""
    env = dict(os.environ)
    env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    env["MDBOOK_OUTPUT"] = json.dumps(XGETTEXT)
    mdbook = tools / "mdbook"
    cmd = [str(mdbook) if mdbook.exists() else "mdbook", "build", str(BOOK), "-d", str(dest)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"check_po: extracting the messages failed: {' '.join(cmd)}")
    return dest / "messages.pot"


def keys(catalog: polib.POFile) -> set[tuple[str | None, str]]:
    return {(e.msgctxt, e.msgid) for e in catalog if not e.obsolete and e.msgid}


def words(text: str) -> int:
    return len(text.split())


def show(label: str, items: list[str], limit: int = 8) -> None:
    print(f"  {label}: {len(items)}")
    for msgid in items[:limit]:
        one_line = " ".join(msgid.split())
        print(f"    {one_line[:96]}")
    if len(items) > limit:
        print(f"    ... and {len(items) - limit} more")


def check_pot(tools: Path) -> bool:
    if not POT.exists():
        print(f"check_po: {POT.relative_to(ROOT)} is missing; run scripts/check_po.py --update")
        return False
    with tempfile.TemporaryDirectory(prefix="tcplab-pot-") as tmp:
        fresh = polib.pofile(str(extract(tools, Path(tmp))))
    stored = polib.pofile(str(POT))
    new, gone = keys(fresh) - keys(stored), keys(stored) - keys(fresh)
    if new or gone:
        print(f"check_po: {POT.relative_to(ROOT)} is stale against book/src:")
        show("in the English, missing from the template", sorted(m for _, m in new))
        show("in the template, gone from the English", sorted(m for _, m in gone))
        print("  run: python3 scripts/check_po.py --update, then translate the new messages")
        return False
    n = len(keys(stored))
    print(f"check_po: {POT.relative_to(ROOT)} is current ({n} messages)")
    return True


def check_language(po_path: Path, template: polib.POFile) -> bool:
    po = polib.pofile(str(po_path))
    entries = {(e.msgctxt, e.msgid): e for e in po if not e.obsolete and e.msgid}
    missing = sorted(msgid for _, msgid in keys(template) - entries.keys())
    untranslated = [e.msgid for e in entries.values() if not e.msgstr and not e.fuzzy]
    fuzzy = [e.msgid for e in entries.values() if e.fuzzy]
    done = [e for e in entries.values() if e.msgstr and not e.fuzzy]
    as_is = [e for e in done if e.msgstr == e.msgid]
    source_words = sum(words(e.msgid) for e in done)
    print(
        f"check_po: {po_path.relative_to(ROOT)}: {len(done)} translated messages"
        f" ({len(done) - len(as_is)} in the language, {len(as_is)} kept as they are: code,"
        f" names), {len(untranslated)} untranslated, {len(fuzzy)} fuzzy,"
        f" {len(missing)} missing; {source_words} English words,"
        f" {sum(len(e.msgstr) for e in done)} characters translated"
    )
    if missing or untranslated or fuzzy:
        show("missing (run --update)", missing)
        show("untranslated", untranslated)
        show("fuzzy", fuzzy)
        return False
    return True


class Shape(HTMLParser):
    """What must not change between a page and its translation."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.counts: dict[str, int] = {}
        self.code: list[str] = []
        self._pre = 0
        self._buf: list[str] = []
        self._in_main = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "main":
            self._in_main = True
        if not self._in_main:
            return
        # A chapter's title (h1) takes its id from the translated text, like its entry in the
        # table of contents; every other heading keeps the English id, so links to it work.
        if tag in ("h2", "h3", "h4", "h5", "h6") and a.get("id"):
            self.ids.append(str(a["id"]))
        if tag in ("h1", "table", "tr", "img", "pre", "li", "details"):
            self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "img":
            self.code.append(f"img {a.get('src')}")
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self._in_main = False
        if tag == "pre" and self._pre:
            self._pre -= 1
            if not self._pre:
                self.code.append("".join(self._buf))
                self._buf = []

    def handle_data(self, data: str) -> None:
        if self._pre:
            self._buf.append(data)


def shape(path: Path) -> Shape:
    page = Shape()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def compare_built(site: Path) -> bool:
    ok = True
    languages = {p.stem for p in PO_DIR.glob("*.po")}
    for lang in sorted(languages):
        pages = 0
        for english in sorted(site.glob("**/*.html")):
            rel = english.relative_to(site)
            if rel.parts[0] in languages or rel.name in ("print.html", "toc.html", "404.html"):
                continue
            other = site / lang / rel
            if not other.exists():
                print(f"check_po: {lang}/{rel} is missing from the build")
                ok = False
                continue
            a, b = shape(english), shape(other)
            problems = []
            if a.ids != b.ids:
                problems.append(f"heading ids differ: {sorted(set(a.ids) ^ set(b.ids))[:4]}")
            if a.counts != b.counts:
                problems.append(f"structure differs: {a.counts} vs {b.counts}")
            if a.code != b.code:
                pairs = zip([*a.code, ""], [*b.code, ""])
                first = next(i for i, (x, y) in enumerate(pairs) if x != y)
                problems.append(f"code block or image {first + 1} differs")
            for problem in problems:
                print(f"check_po: {lang}/{rel}: {problem}")
            ok = ok and not problems
            pages += 1
        print(f"check_po: {pages} pages of {lang} compared with the English")
    return ok


def code_blocks() -> str:
    """The text of every fenced code block of the English sources (not the included files)."""
    blocks: list[str] = []
    for md in sorted((BOOK / "src").rglob("*.md")):
        inside = False
        for line in md.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                inside = not inside
            elif inside:
                blocks.append(line)
    return "\n".join(blocks)


def update(tools: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tcplab-pot-") as tmp:
        fresh = polib.pofile(str(extract(tools, Path(tmp))))
    stored = polib.pofile(str(POT)) if POT.exists() else None
    if stored is not None and [(e.msgid, e.occurrences) for e in stored] == [
        (e.msgid, e.occurrences) for e in fresh
    ]:
        # Unchanged: keep the file, and its creation date, as it is.
        fresh = stored
        print(f"check_po: {POT.relative_to(ROOT)} unchanged ({len(keys(fresh))} messages)")
    else:
        fresh.save(str(POT))
        print(f"check_po: wrote {POT.relative_to(ROOT)} ({len(keys(fresh))} messages)")
    code = code_blocks()
    for po_path in sorted(PO_DIR.glob("*.po")):
        po = polib.pofile(str(po_path))
        po.merge(fresh)
        # A comment or a string from a code block stays as it is in every language.
        kept = 0
        for entry in po:
            if not entry.obsolete and not entry.msgstr and entry.msgid.strip() in code:
                entry.msgstr = entry.msgid
                kept += 1
        po.save(str(po_path))
        print(
            f"check_po: merged the template into {po_path.relative_to(ROOT)}"
            f" ({kept} new messages from code blocks kept as they are)"
        )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tools",
        type=Path,
        default=ROOT / ".tools" / "bin",
        help="folder with mdbook and mdbook-xgettext (default: .tools/bin)",
    )
    ap.add_argument("--update", action="store_true", help="re-extract the template and merge it")
    ap.add_argument(
        "--built",
        type=Path,
        help="the built English site with each language in SITE/LANG: compare their pages",
    )
    args = ap.parse_args(argv)
    if args.update:
        update(args.tools)
    ok = check_pot(args.tools)
    template = polib.pofile(str(POT)) if POT.exists() else polib.POFile()
    for po_path in sorted(PO_DIR.glob("*.po")):
        ok = check_language(po_path, template) and ok
    if args.built is not None:
        ok = compare_built(args.built) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
