"""`stockwatch notify` refuses an unusable webhook URL in one line that says why and never quotes it."""

from __future__ import annotations

import os

import pytest

from consumer.cli import main
from consumer.notify.webhook import url_problem


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached: refused before


SECRET = "s3cr3t-T0KEN"
REFUSED = {
    "notaurl": "is not an http:// or https:// URL",
    f"admin:{SECRET}@hooks.example.com/x": "is not an http:// or https:// URL",
    f"ftp://hooks.example.com/{SECRET}": "is not an http:// or https:// URL",
    f"http:/hooks.example.com/{SECRET}": "is not an http:// or https:// URL",
    f"https://admin:{SECRET}@/path?token={SECRET}": "has no host",
    f"https://admin:{SECRET}@hooks.example.com:port/x": "has a port that is not a number from 0 to 65535",
    f"https://[::1/x?token={SECRET}": "has a malformed [IPv6] host",
    f"https://hooks.example.com/x {SECRET}": "contains a space or a control character",
}


@pytest.mark.parametrize(("url", "why"), REFUSED.items())
def test_an_unusable_webhook_is_one_line_saying_why_without_the_url(capsys, url, why):
    assert main(["notify", "--webhook", url]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"stockwatch notify: --webhook: the webhook URL {why} (expected like https://hooks.example.com/...)\n"
    )
    assert SECRET not in err and "notaurl" not in err


def test_the_setting_is_named_when_the_url_came_from_it(capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_NOTIFY_WEBHOOK", f"notaurl-{SECRET}")
    assert main(["notify"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("stockwatch notify: STOCKWATCH_NOTIFY_WEBHOOK: the webhook URL is not")
        and SECRET not in err
    )


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/services/T0/B0/X", "HTTP://user:pw@127.0.0.1:8080/x?t=1", "http://[::1]:80"],
)
def test_usable_webhooks_pass(url):
    assert url_problem(url) is None
