"""Running a connector against a local fake platform server, without the capture pipeline.

``PlainClient`` is a real HTTP client (httpx) that implements the connector-facing
``HttpClient`` protocol without archiving, so each connector's platform logic can be
specified on its own; the pipeline tests run connectors through the archiving client.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from archiver.connector import (
    AccountInfo,
    CapturePlan,
    Checkpoint,
    Item,
)
from archiver.errors import MalformedResponseError

_ids = itertools.count(1)


@dataclass
class PlainResponse:
    status_code: int
    url: str
    headers: httpx.Headers
    content: bytes
    evidence: str
    links: Mapping[str, str]

    def json(self) -> Any:
        try:
            return httpx.Response(200, content=self.content).json()
        except ValueError as exc:
            raise MalformedResponseError(f"{self.url} did not answer JSON: {exc}") from exc


class PlainClient:
    """``HttpClient`` over httpx; records every URL it fetched in ``self.seen``."""

    def __init__(self) -> None:
        self._client = httpx.Client(timeout=10)
        self.seen: list[str] = []

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> PlainResponse:
        # httpx's ``params=`` replaces the URL's query (a followed Link's cursor); merge instead.
        target = httpx.URL(url).copy_merge_params(dict(params)) if params else httpx.URL(url)
        r = self._client.get(target, headers=dict(headers or {}))
        self.seen.append(str(r.url))
        links = {link["rel"]: link["url"] for link in r.links.values() if "rel" in link}
        return PlainResponse(
            r.status_code, str(r.url), r.headers, r.content, f"<urn:test:{next(_ids)}>", links
        )


def account(
    platform: str,
    *,
    handle: str | None = None,
    platform_id: str | None = None,
    api_base: str | None = None,
    options: Mapping[str, str | int | bool] | None = None,
    credentials: Mapping[str, Any] | None = None,
) -> AccountInfo:
    return AccountInfo(
        id="test-account",
        platform=platform,
        handle=handle,
        platform_id=platform_id,
        api_base=api_base,
        options=dict(options or {}),
        credentials=dict(credentials or {}),
    )


def run(
    connector: Any, checkpoint: Checkpoint | None = None, plan: CapturePlan | None = None
) -> tuple[list[Item], list[Checkpoint]]:
    """Drain one capture: the items and the checkpoints, in order."""
    items: list[Item] = []
    checkpoints: list[Checkpoint] = []
    out: Iterator[Item | Checkpoint] = connector.capture(checkpoint, plan or CapturePlan())
    for x in out:
        (checkpoints if isinstance(x, Checkpoint) else items).append(x)
    return items, checkpoints
