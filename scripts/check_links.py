#!/usr/bin/env python3
"""Check that no internal link in a built HTML site is broken.

    python3 scripts/check_links.py book/book            # the mdBook output
    python3 scripts/check_links.py book/book --images   # also <img src> and other src=

For every .html file under the folder, every relative `href` (and with --images every
relative `src`) must point to a file that exists inside the folder, and a `#fragment` must
name an `id` (or an `<a name>`) in the target page. Links that leave the site (http:, https:,
mailto:, javascript:, data:, protocol-relative //host) are not checked. A `<base href>` in a
page is honoured, as a browser would.

Exits 0 when every link resolves, 1 when any is broken (each one listed as
`page: link (reason)`), 2 on bad usage. Python 3 standard library only.

Left out on purpose: external links (they need the network and change on their own) and
links built by JavaScript at run time.
"""

from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL_SCHEMES = {"http", "https", "mailto", "javascript", "data", "tel", "ftp"}


class Page(HTMLParser):
    """The ids, the base and the links of one HTML page."""

    def __init__(self, want_src: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.want_src = want_src
        self.ids: set[str] = set()
        self.base: str | None = None
        self.links: list[tuple[str, str]] = []  # (attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        if tag == "base" and "href" in a:
            self.base = a["href"]
            return
        if "href" in a and tag in ("a", "link", "area"):
            self.links.append(("href", a["href"]))
        if self.want_src and "src" in a and tag in ("img", "script", "iframe", "source", "embed"):
            self.links.append(("src", a["src"]))

    handle_startendtag = handle_starttag


def parse(path: Path, want_src: bool) -> Page:
    page = Page(want_src)
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def check(root: Path, want_src: bool) -> list[str]:
    root = root.resolve()
    pages: dict[Path, Page] = {}
    for html in sorted(root.rglob("*.html")):
        pages[html.resolve()] = parse(html, want_src)

    def ids_of(path: Path) -> set[str] | None:
        if path not in pages:
            if path.suffix.lower() not in (".html", ".htm") or not path.is_file():
                return None
            pages[path] = parse(path, want_src)
        return pages[path].ids

    problems: list[str] = []
    for page_path, page in list(pages.items()):
        rel_page = page_path.relative_to(root)
        for attr, link in page.links:
            parts = urlsplit(link.strip())
            if parts.scheme.lower() in EXTERNAL_SCHEMES or parts.netloc:
                continue
            if parts.scheme:  # an unknown scheme is not a file in this site
                problems.append(f"{rel_page}: {link} (unknown scheme {parts.scheme!r})")
                continue
            path_part = unquote(parts.path)
            fragment = unquote(parts.fragment)
            if path_part == "" and not fragment:
                continue  # href="" or "?query": the page itself
            # Where does it point? A path starting with / is relative to the site's root
            # (the folder checked); otherwise relative to <base href> or to the page.
            if path_part.startswith("/"):
                target = root / path_part.lstrip("/")
            elif path_part == "":
                target = page_path
            else:
                base_dir = page_path.parent
                if page.base is not None:
                    b = urlsplit(page.base)
                    if not (b.scheme or b.netloc):
                        bp = unquote(b.path)
                        base_dir = (
                            root / bp.lstrip("/") if bp.startswith("/") else page_path.parent / bp
                        )
                        if not bp.endswith("/") and bp:
                            base_dir = base_dir.parent
                target = base_dir / path_part
            target = target.resolve()
            try:
                target.relative_to(root)
            except ValueError:
                problems.append(f"{rel_page}: {link} ({attr} leaves the site folder)")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(
                    f"{rel_page}: {link} ({attr} target {target.relative_to(root)} missing)"
                )
                continue
            if fragment and attr == "href":
                ids = ids_of(target)
                if ids is not None and fragment not in ids:
                    problems.append(
                        f"{rel_page}: {link} (no id {fragment!r} in {target.relative_to(root)})"
                    )
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="folder of the built HTML, e.g. book/book")
    ap.add_argument(
        "--images",
        action="store_true",
        help="also check relative src= of img, script, iframe, source and embed",
    )
    args = ap.parse_args(argv)
    if not args.site.is_dir():
        print(f"check_links: {args.site} is not a folder; build the book first", file=sys.stderr)
        return 2
    n_pages = sum(1 for _ in args.site.rglob("*.html"))
    if n_pages == 0:
        print(
            f"check_links: no .html files under {args.site}; build the book first", file=sys.stderr
        )
        return 2
    problems = check(args.site, args.images)
    for p in problems:
        print(p)
    if problems:
        print(
            f"check_links: {len(problems)} broken internal link(s) in {n_pages} pages",
            file=sys.stderr,
        )
        return 1
    print(f"check_links: {n_pages} pages, every internal link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
