"""A malformed Mongo URI is refused from its text alone, without the password; a valid one is not
looked up (an unreachable server is an outage, found and retried later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.adapters.mongo import MongoUriError, check_uri
from consumer.adapters.mongo.uri import uri_problem

SECRET = "hunter2-secret"


@pytest.mark.parametrize(
    "uri",
    [
        f"mongodb//stock:{SECRET}@db:27017",  # scheme without "://"
        f"mongodb://stock:{SECRET}@db:99999/warehouse",  # port out of range
        f"mongodb://stock:{SECRET}@db:notaport/",
        f"mongodb://stock:{SECRET}:more@db/",  # unescaped ':' in the password
        f"mongodb://stock:{SECRET}@[::1/",  # unclosed IPv6 literal
        f"mongodb+srv://stock:{SECRET}@a.example,b.example/",  # SRV takes exactly one host
        f"http://stock:{SECRET}@db/",
        f"mongodb://stock:{SECRET}@db/?authMechanism=BOGUS",  # pymongo would only warn, then ignore it
        f"mongodb://stock:{SECRET}@db/?tls=maybe",
        f"mongodb://stock:{SECRET}@db/?replicaSett=rs0",  # a misspelt option name
        "",
    ],
)
def test_a_malformed_uri_is_refused_without_the_password(uri: str) -> None:
    problem = uri_problem(uri)
    assert problem and SECRET not in problem and "more" not in problem
    with pytest.raises(MongoUriError) as caught:
        check_uri(uri)
    assert str(caught.value) == problem and "\n" not in problem


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://127.0.0.1:1/warehouse",  # a closed port: an outage, not a setting error
        f"mongodb://stock:{SECRET}@no-such-host.invalid:27017/?authSource=admin",
        "mongodb+srv://cluster.no-such-domain.invalid/",  # no DNS lookup before the first operation
    ],
)
def test_a_well_formed_uri_passes_without_any_lookup(uri: str) -> None:
    assert uri_problem(uri) is None
    check_uri(uri)


def test_a_short_password_is_masked_where_it_stands_alone_not_inside_words() -> None:
    assert uri_problem("http://stock:b@db/") == (
        "Invalid URI scheme: URI must begin with 'mongodb://' or 'mongodb+srv://'"
    )


@pytest.mark.parametrize("uri", [f"mongodb//stock:{SECRET}@db:notaport", f"stock:{SECRET}@db:notaport"])
def test_a_uri_without_its_scheme_separator_keeps_its_password_out(uri: str) -> None:
    assert SECRET not in (uri_problem(uri) or "")


@pytest.mark.parametrize(
    "options",
    [
        "tlsCAFile={tmp}/no-such-ca.pem",  # FileNotFoundError from pymongo's readability check
        "tlsCAFile={tmp}",  # IsADirectoryError
        "tlsCAFile={tmp}/garbage.pem",  # ssl.SSLError: no certificate in it
        "tlsCertificateKeyFile={tmp}/no-such-key.pem&tlsCertificateKeyFilePassword=" + SECRET,
    ],
)
def test_a_tls_file_option_that_cannot_be_loaded_is_a_problem_not_a_crash(
    options: str, tmp_path: Path
) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    problem = uri_problem(f"mongodb://stock:{SECRET}@db/?tls=true&" + options.format(tmp=tmp_path))
    assert problem and SECRET not in problem and "\n" not in problem
