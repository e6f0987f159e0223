"""FileFetcher: file: URLs, plain paths, {{Param}} placeholders, confinement and bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callxml.errors import WebhookError
from callxml.webhooks import (
    BODY_TOO_LARGE,
    INVALID_URL,
    RETRIEVAL_FAILURE,
    FileFetcher,
    WebhookRequest,
    resolve_url,
)

DOC = b"<Response><Say>hi</Say></Response>"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    d = tmp_path / "flows"
    d.mkdir()
    (d / "ivr.xml").write_bytes(DOC)
    (d / "menu-1.xml").write_bytes(b"<Response><Dial/></Response>")
    (d / "menu-default.xml").write_bytes(b"<Response><Redirect>ivr.xml</Redirect></Response>")
    (d / "notes.txt").write_bytes(b"text")
    (tmp_path / "secret.xml").write_bytes(b"<secret/>")
    return d


def req(url: str, **params: str) -> WebhookRequest:
    return WebhookRequest(url, "POST", tuple(params.items()))


async def test_relative_absolute_and_file_url(flows: Path) -> None:
    fetcher = FileFetcher(flows)
    for url in ("ivr.xml", str(flows / "ivr.xml"), (flows / "ivr.xml").as_uri()):
        resp = await fetcher.fetch(req(url))
        assert resp.body == DOC
        assert resp.status == 200
        assert resp.content_type == "text/xml"
        assert resp.url == (flows / "ivr.xml").as_uri()
    assert (await fetcher.fetch(req("notes.txt"))).content_type == "text/plain"


async def test_percent_encoding_query_and_fragment(flows: Path) -> None:
    (flows / "with space.xml").write_bytes(DOC)
    fetcher = FileFetcher(flows)
    assert (await fetcher.fetch(req("with%20space.xml?step=2#x"))).body == DOC
    assert (await fetcher.fetch(req("file://localhost" + str(flows / "ivr.xml")))).body == DOC


async def test_relative_action_resolution_round_trip(flows: Path) -> None:
    fetcher = FileFetcher(flows)
    first = await fetcher.fetch(req("ivr.xml"))
    nxt = resolve_url(first.url, "menu-{{Digits}}.xml")
    assert (await fetcher.fetch(req(nxt, Digits="1"))).url == (flows / "menu-1.xml").as_uri()
    assert resolve_url("examples/flows/ivr.xml", "menu.xml") == "examples/flows/menu.xml"


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("1", "menu-1.xml"),
        ("9", "menu-default.xml"),  # no such file: the default
        ("", "menu-default.xml"),  # empty value
        ("../secret", "menu-default.xml"),  # unsafe characters never reach the path
    ],
)
async def test_placeholder(flows: Path, digits: str, expected: str) -> None:
    resp = await FileFetcher(flows).fetch(req("menu-{{Digits}}.xml", Digits=digits))
    assert resp.url == (flows / expected).as_uri()


async def test_placeholder_percent_encoded(flows: Path) -> None:
    resp = await FileFetcher(flows).fetch(req("menu-%7B%7BDigits%7D%7D.xml", Digits="1"))
    assert resp.url == (flows / "menu-1.xml").as_uri()


async def test_placeholder_missing_param_uses_default(flows: Path) -> None:
    resp = await FileFetcher(flows).fetch(req("menu-{{Digits}}.xml"))
    assert resp.url == (flows / "menu-default.xml").as_uri()


async def test_missing_file(flows: Path) -> None:
    with pytest.raises(WebhookError) as info:
        await FileFetcher(flows).fetch(req("nope.xml"))
    assert info.value.error_code == RETRIEVAL_FAILURE
    assert "404" in str(info.value)
    with pytest.raises(WebhookError):
        await FileFetcher(flows).fetch(req("."))  # a directory is not a document


async def test_confined_to_base_dir(flows: Path) -> None:
    for url in ("../secret.xml", str(flows.parent / "secret.xml"), "/etc/passwd"):
        with pytest.raises(WebhookError) as info:
            await FileFetcher(flows).fetch(req(url))
        assert info.value.error_code == RETRIEVAL_FAILURE
        assert "outside" in str(info.value)
    resp = await FileFetcher(flows, confine=False).fetch(req("../secret.xml"))
    assert resp.body == b"<secret/>"


async def test_symlink_escape_refused(flows: Path) -> None:
    os.symlink(flows.parent / "secret.xml", flows / "link.xml")
    with pytest.raises(WebhookError):
        await FileFetcher(flows).fetch(req("link.xml"))


async def test_fifo_refused_without_blocking(flows: Path) -> None:
    os.mkfifo(flows / "pipe.xml")
    with pytest.raises(WebhookError):
        await FileFetcher(flows).fetch(req("pipe.xml"))


async def test_size_cap(flows: Path) -> None:
    (flows / "big.xml").write_bytes(b" " * 101)
    (flows / "ok.xml").write_bytes(b" " * 100)
    fetcher = FileFetcher(flows, max_body=100)
    assert len((await fetcher.fetch(req("ok.xml"))).body) == 100
    with pytest.raises(WebhookError) as info:
        await fetcher.fetch(req("big.xml"))
    assert info.value.error_code == BODY_TOO_LARGE


@pytest.mark.parametrize("url", ["http://example.com/x.xml", "file://otherhost/x.xml", "ftp:x"])
async def test_non_local_urls_refused(flows: Path, url: str) -> None:
    with pytest.raises(WebhookError) as info:
        await FileFetcher(flows).fetch(req(url))
    assert info.value.error_code == INVALID_URL
