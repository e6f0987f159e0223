"""Local-file fetching, so ``callxml simulate examples/flows/ivr.xml`` runs without a web server.

This module owns how ``file:`` URLs and plain paths map to files: relative paths resolve against
``base_dir``, and with ``confine`` (the default) nothing outside ``base_dir`` is read. Static
files cannot look at the request, so one small convention lets them branch: a ``{{Name}}``
placeholder in the *path* is replaced by that request parameter (TwiML Bins spell templates the
same way). ``menu-{{Digits}}.xml`` fetched with ``Digits=1`` reads ``menu-1.xml``; when that file
does not exist, or the value is empty or has characters other than ``A-Z a-z 0-9 _ + * # -``,
``menu-default.xml`` is read instead. The request method is ignored.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from callxml.errors import WebhookError
from callxml.webhooks.base import (
    BODY_TOO_LARGE,
    INVALID_URL,
    MAX_URL_LENGTH,
    RETRIEVAL_FAILURE,
    WebhookRequest,
    WebhookResponse,
)

__all__ = ["DEFAULT_VALUE", "FileFetcher"]

DEFAULT_VALUE = "default"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]{0,63})\s*\}\}")
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_+*#-]{1,64}")
_MAX_PLACEHOLDERS = 8


class FileFetcher:
    """Reads documents from local files; implements :class:`callxml.webhooks.Fetcher`."""

    def __init__(self, base_dir: Path, *, max_body: int = 64 * 1024, confine: bool = True) -> None:
        self._base = Path(base_dir).resolve()
        self._max_body = max_body
        self._confine = confine

    def _raw_path(self, url: str) -> str:
        if len(url) > MAX_URL_LENGTH:
            raise WebhookError("file URL too long", error_code=INVALID_URL, url=url[:200])
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise WebhookError(
                    f"file URL names a remote host {parts.netloc!r}",
                    error_code=INVALID_URL,
                    url=url,
                )
        elif scheme:
            raise WebhookError(
                f"the file fetcher reads local files only, not {scheme}: URLs",
                error_code=INVALID_URL,
                url=url,
            )
        # A plain path is a relative or absolute URL reference: query and fragment are dropped.
        return unquote(parts.path)

    def _candidates(self, raw: str, params: tuple[tuple[str, str], ...]) -> list[Path]:
        names = _PLACEHOLDER.findall(raw)
        if not names:
            return [self._absolute(raw)]
        if len(names) > _MAX_PLACEHOLDERS:
            raise WebhookError("too many {{placeholders}} in file URL", error_code=INVALID_URL)
        values = dict(params)

        def fill(match: re.Match[str]) -> str:
            value = values.get(match.group(1), "")
            return value if _SAFE_VALUE.fullmatch(value) else DEFAULT_VALUE

        filled = self._absolute(_PLACEHOLDER.sub(fill, raw))
        fallback = self._absolute(_PLACEHOLDER.sub(DEFAULT_VALUE, raw))
        return [filled, fallback] if filled != fallback else [filled]

    def _absolute(self, raw: str) -> Path:
        path = Path(raw)
        if not path.is_absolute():
            path = self._base / path
        return path.resolve()

    async def fetch(self, request: WebhookRequest) -> WebhookResponse:
        """Read the file ``request.url`` names; raise :class:`WebhookError` if that fails."""
        raw = self._raw_path(request.url)
        candidates = self._candidates(raw, request.params)
        path = next((p for p in candidates if p.is_file()), candidates[0])
        if self._confine and not path.is_relative_to(self._base):
            raise WebhookError(
                f"{path} is outside {self._base}", error_code=RETRIEVAL_FAILURE, url=request.url
            )
        if not path.is_file():  # also refuses FIFOs and devices, which could block or never end
            raise WebhookError(
                f"{path} not found (404)", error_code=RETRIEVAL_FAILURE, url=request.url
            )
        try:
            with path.open("rb") as f:
                body = f.read(self._max_body + 1)
        except OSError as exc:
            raise WebhookError(
                f"cannot read {path} (404): {exc.strerror or exc}",
                error_code=RETRIEVAL_FAILURE,
                url=request.url,
            ) from exc
        if len(body) > self._max_body:
            raise WebhookError(
                f"{path} is larger than {self._max_body} bytes",
                error_code=BODY_TOO_LARGE,
                url=request.url,
            )
        return WebhookResponse(
            request=request,
            status=200,
            body=body,
            content_type=_content_type(path),
            url=path.as_uri(),
            elapsed=0.0,
        )


def _content_type(path: Path) -> str:
    if path.suffix.lower() == ".xml":
        return "text/xml"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
