"""Configuration: flags over TONGXIN_* variables over defaults, and one clear error per mistake."""

from __future__ import annotations

import pytest

from signaling.config import ConfigError, ServeConfig, parse_serve_config


@pytest.mark.parametrize(
    ("argv", "env", "field", "expected"),
    [
        ([], {}, "host", "127.0.0.1"),
        ([], {}, "port", 8080),
        ([], {}, "redis_url", None),
        ([], {}, "demo", True),
        (["--port", "9000"], {}, "port", 9000),
        ([], {"TONGXIN_PORT": "9001"}, "port", 9001),
        (["--port", "9002"], {"TONGXIN_PORT": "9001"}, "port", 9002),
        (["--redis", "redis://127.0.0.1:6379/0"], {}, "redis_url", "redis://127.0.0.1:6379/0"),
        ([], {"TONGXIN_REDIS_URL": "redis://r:6379"}, "redis_url", "redis://r:6379"),
        (["--media-workers", "0"], {}, "media_workers", 0),
        ([], {"TONGXIN_MEDIA_WORKERS": "3"}, "media_workers", 3),
        (["--no-demo"], {}, "demo", False),
        (["--demo"], {"TONGXIN_DEMO": "false"}, "demo", True),
        ([], {"TONGXIN_DEMO": "no"}, "demo", False),
        (["--host", "0.0.0.0"], {}, "host", "0.0.0.0"),
        (["--log-format", "json"], {}, "log_format", "json"),
        ([], {"TONGXIN_TURN_URLS": "turn:a:3478, turns:b:5349"}, "turn_urls",
         ("turn:a:3478", "turns:b:5349")),
        ([], {}, "adaptation", True),
        (["--adaptation", "off"], {}, "adaptation", False),
        ([], {"TONGXIN_ADAPTATION": "off"}, "adaptation", False),
        (["--adaptation", "on"], {"TONGXIN_ADAPTATION": "off"}, "adaptation", True),
        ([], {}, "media_role", "any"),
        (["--media-role", "edge"], {}, "media_role", "edge"),
        ([], {"TONGXIN_MEDIA_ROLE": "origin"}, "media_role", "origin"),
        (["--media-role", "any"], {"TONGXIN_MEDIA_ROLE": "edge"}, "media_role", "any"),
        ([], {}, "region", None),
        (["--region", "甘肃省/定西市"], {}, "region", "甘肃省/定西市"),
        ([], {"TONGXIN_REGION": "/渭源县/"}, "region", "渭源县"),
        ([], {"TONGXIN_REGION": ""}, "region", None),
        ([], {}, "span_after", 100),
        (["--span-after", "0"], {}, "span_after", 0),
        ([], {"TONGXIN_SPAN_AFTER": "40"}, "span_after", 40),
    ],
)
def test_settings_come_from_flags_then_environment_then_defaults(argv, env, field, expected):
    assert getattr(parse_serve_config(argv, env), field) == expected


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--port", "abc"], {}, "port"),
        (["--port", "70000"], {}, "port"),
        ([], {"TONGXIN_PORT": "-1"}, "port"),
        (["--redis", "http://x"], {}, "redis"),
        (["--media-workers", "many"], {}, "media-workers"),
        (["--media-workers", "500"], {}, "media-workers"),
        ([], {"TONGXIN_DEMO": "maybe"}, "demo"),
        (["--log-format", "xml"], {}, "log-format"),
        (["--log-level", "loud"], {}, "log-level"),
        (["--host", "bad host"], {}, "host"),
        (["--public-url", "ftp://x"], {}, "public-url"),
        (["--tls-cert", "/nonexistent.pem"], {}, "tls"),
        ([], {"TONGXIN_TOKEN_SECRET": "short"}, "token-secret"),
        ([], {"TONGXIN_TURN_URLS": "http://turn"}, "turn-urls"),
        (["--bogus"], {}, "--bogus"),
        (["--adaptation", "sometimes"], {}, "adaptation"),
        (["--media-role", "relay"], {}, "media-role"),
        ([], {"TONGXIN_MEDIA_ROLE": "EDGE"}, "media-role"),
        (["--region", "gansu dingxi"], {}, "region"),
        ([], {"TONGXIN_REGION": "x" * 201}, "region"),
        (["--span-after", "-1"], {}, "span-after"),
        ([], {"TONGXIN_SPAN_AFTER": "lots"}, "span-after"),
    ],
)
def test_a_wrong_setting_is_named_in_one_line(argv, env, names):
    with pytest.raises(ConfigError) as err:
        parse_serve_config(argv, env)
    message = str(err.value)
    assert names in message
    assert "\n" not in message


def test_display_url_replaces_wildcard_host():
    assert ServeConfig(host="0.0.0.0", port=8080).display_url == "http://127.0.0.1:8080"
    assert ServeConfig(public_url="https://tx.example.org/").display_url == "https://tx.example.org"
