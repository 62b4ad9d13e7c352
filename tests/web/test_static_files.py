"""The browser client's files: no inline script or style (the CSP forbids them), every file an
HTML page or module references exists, and every file ships as package data. Vendored
third-party code (web/vendor/) is exempt from the checks of our own modules."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
HTML_FILES = sorted(WEB.rglob("*.html"))
VENDOR = WEB / "vendor"
"""Third-party files copied unchanged (web/vendor/*/README.txt says from where)."""
JS_FILES = sorted(p for p in WEB.rglob("*.js") if VENDOR not in p.parents)
IMPORT = re.compile(r"""(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]"""
                    r"""|import\(\s*['"]([^'"]+)['"]\s*\)""", re.MULTILINE)
DYNAMIC_PAGE = re.compile(r"""['"](\./pages/[a-z]+\.js)['"]""")


class PageScan(HTMLParser):
    """Collects what an HTML page references and any inline code or style it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "style":
            self.inline.append("<style>")
        if "style" in values:
            self.inline.append(f"style= on <{tag}>")
        self.inline.extend(f"{name} on <{tag}>" for name in values if name.startswith("on"))
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.references.append(str(values["src"]))
            if values.get("type") != "module":
                self.inline.append("<script> without type=module")
        for name in ("href", "src"):
            value = values.get(name)
            if tag != "script" and value and value.startswith("/static/"):
                self.references.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline <script> code")


def scan(path: Path) -> PageScan:
    parser = PageScan()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_there_are_pages_to_check() -> None:
    assert {p.name for p in HTML_FILES} >= {"index.html", "join.html"}


@pytest.mark.parametrize("page", HTML_FILES, ids=lambda p: p.name)
def test_no_inline_script_or_style(page: Path) -> None:
    assert scan(page).inline == []


@pytest.mark.parametrize("page", HTML_FILES, ids=lambda p: p.name)
def test_every_referenced_file_exists(page: Path) -> None:
    refs = scan(page).references
    assert refs, "a page with no script or style"
    missing = [r for r in refs if not (WEB / r.removeprefix("/static/")).is_file()]
    assert missing == []


@pytest.mark.parametrize("module", JS_FILES, ids=lambda p: str(p.relative_to(WEB)))
def test_every_imported_module_exists(module: Path) -> None:
    text = module.read_text(encoding="utf-8")
    targets = [a or b for a, b in IMPORT.findall(text)] + DYNAMIC_PAGE.findall(text)
    missing = [t for t in targets if not (module.parent / t).resolve().is_file()]
    assert missing == []


@pytest.mark.parametrize("module", JS_FILES, ids=lambda p: str(p.relative_to(WEB)))
def test_modules_never_write_html_strings(module: Path) -> None:
    text = module.read_text(encoding="utf-8")
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text
    assert "eval(" not in text and "new Function" not in text


PREFERENCES_IN_LOCAL_STORAGE = {"i18n.js", "datasaver.js"}
"""Modules that keep a preference (the language; the data saver's budget, a number) there."""


def test_credentials_are_kept_per_tab_never_in_local_storage() -> None:
    offenders = [p.name for p in JS_FILES
                 if "localStorage" in p.read_text(encoding="utf-8")
                 and p.name not in PREFERENCES_IN_LOCAL_STORAGE]
    assert offenders == []
    saver = (WEB / "js" / "datasaver.js").read_text(encoding="utf-8")
    assert "credential" not in saver.lower() and "token" not in saver.lower()


def test_every_web_file_ships_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["web"]
    shipped_suffixes = {p.rsplit("*", 1)[-1] for p in patterns}
    files = [p for p in WEB.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix != ".py"]
    missing = [str(p.relative_to(WEB)) for p in files
               if not any(fnmatch(p.name, "*" + s) for s in shipped_suffixes)]
    assert missing == []
