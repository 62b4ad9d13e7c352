"""The zh-CN and en string files: same keys, same placeholders, every key the code uses exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
LANGS = ("zh-CN", "en")
KEY_LITERAL = re.compile(r"""['"]((?:[a-z][a-z0-9]*)\.[a-z][a-z0-9_]*)['"]""")
DATA_I18N = re.compile(r'data-i18n="([^"]+)"')
DYNAMIC_PREFIX = re.compile(r"`([a-z]+\.[a-z_]*)\$\{")
NOT_KEYS = {"tongxin"}
"""Prefixes of dotted literals that are not string keys (storage keys)."""
DYNAMIC_VALUES = {
    "urgency.": ["routine", "urgent", "emergency"],
    "outcome.": ["resolved", "referred", "follow_up", "no_show", "cancelled", "other"],
    "quality.": ["good", "fair", "poor", "unknown"],
    "role.": ["teacher", "assistant", "doctor", "clinic", "observer", "operator"],
    "expert.": ["doctor", "teacher"],
    "class_state.": ["scheduled", "live", "ended"],
    "site.": ["village_clinic", "township_health_center", "county_hospital", "city_hospital",
              "provincial_hospital", "school", "classroom"],
    "join.verdict_": ["full", "low", "audio_only"],
    "join.checking_": ["rtt", "download"],
    "rec.status_": ["recording", "processing", "ready", "failed"],
    "rec.kind_": ["class", "consult"],
    "rec.play_error_": ["unsupported", "network", "media"],
}
OPTIONAL_DYNAMIC = {"error.", "notice."}
"""Prefixes whose keys are looked up with a fallback to the server's text."""


def strings(lang: str) -> dict[str, str]:
    data = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def own_files(pattern: str) -> list[Path]:
    """The client's own files (not the vendored ones in web/vendor/)."""
    return [p for p in WEB.rglob(pattern) if WEB / "vendor" not in p.parents]


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in own_files("*.js") + own_files("*.html"):
        text = path.read_text(encoding="utf-8")
        for key in KEY_LITERAL.findall(text) + DATA_I18N.findall(text):
            if key.split(".")[0] not in NOT_KEYS and not key.endswith(".js"):
                keys.add(key)
    return keys


def dynamic_prefixes() -> set[str]:
    found: set[str] = set()
    for path in own_files("*.js"):
        found.update(DYNAMIC_PREFIX.findall(path.read_text(encoding="utf-8")))
    return found


def test_both_languages_have_the_same_keys() -> None:
    zh, en = strings("zh-CN"), strings("en")
    assert sorted(set(zh) ^ set(en)) == []


@pytest.mark.parametrize("lang", LANGS)
def test_no_string_is_empty(lang: str) -> None:
    assert [k for k, v in strings(lang).items() if not str(v).strip()] == []


def test_placeholders_match_between_languages() -> None:
    zh, en = strings("zh-CN"), strings("en")
    names = re.compile(r"\{(\w+)\}")
    mismatched = [k for k in zh if set(names.findall(zh[k])) != set(names.findall(en[k]))]
    assert mismatched == []


@pytest.mark.parametrize("lang", LANGS)
def test_every_key_the_pages_use_exists(lang: str) -> None:
    assert sorted(used_keys() - set(strings(lang))) == []


@pytest.mark.parametrize("lang", LANGS)
def test_every_value_of_a_computed_key_exists(lang: str) -> None:
    table = strings(lang)
    missing = [p + v for p, values in DYNAMIC_VALUES.items() for v in values if p + v not in table]
    assert missing == []


def test_every_computed_key_prefix_is_known() -> None:
    assert sorted(dynamic_prefixes() - set(DYNAMIC_VALUES) - OPTIONAL_DYNAMIC) == []


def test_chinese_strings_use_the_users_terms() -> None:
    text = " ".join(strings("zh-CN").values())
    for term in ("双师课堂", "远程会诊", "卫生院", "村卫生室", "教学点"):
        assert term in text, term
