"""The `http-catalogue` connector: a catalogue of files served over HTTP, polled on a
schedule. What it shows: options, a listing that can fail as a whole or per item,
downloads hashed while they stream (`owned`), deletions, and a cursor saved in `finish`
only once the job's results are durable."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

from pydantic import HttpUrl

from ingestd.plugin import (
    Code, Connector, ConnectorError, Deleted, Duration, Event, Failed, JobContext, Outcome, ScheduleOptions, Staged,
)
from ingestd.plugin.kit import safe_name, write_json

CHUNK = 1 << 20
SEEN = "seen.json"  # id → the `modified` value of the version this source took


class CatalogueOptions(ScheduleOptions):
    """The source's keys: `url`, `timeout`, plus `every`/`cron`/`jitter` from ScheduleOptions."""

    url: HttpUrl
    timeout: Duration = 30.0
    max_size: int | None = None  # bytes; a bigger file is refused, not downloaded


class CatalogueConnector(Connector):
    kind = "http-catalogue"
    Options = CatalogueOptions
    description = "files listed in a JSON catalogue served over HTTP"

    def stage(self, ctx: JobContext) -> Iterator[Event]:
        items = self._catalogue()
        seen = _load(ctx)
        listed = set()
        for item in items:
            if ctx.stop.is_set():
                return
            listed.add(item["id"])
            if seen.get(item["id"]) == item["modified"]:
                continue  # this version was taken already: not downloaded again
            yield self._download(ctx, item)
        for gone in sorted(set(seen) - listed):
            yield Deleted(origin_uri=self._origin(gone), identity=gone, token=(gone, None))

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        """The results are durable: remember what was taken and what went. A failed item is
        not remembered, so the next run tries it again."""
        seen = _load(ctx)
        for outcome in outcomes:
            item_id, modified = outcome.event.token
            if outcome.outcome in ("ingested", "unchanged"):
                seen[item_id] = modified
            elif outcome.outcome == "deleted":
                seen.pop(item_id, None)
        write_json(ctx.source_state / SEEN, seen)

    def check(self) -> list[str]:
        try:
            self._catalogue()
        except ConnectorError as exc:
            return [f'sources "{self.source.name}": url: {exc.message}']
        return []

    # -- HTTP -------------------------------------------------------------------------

    def _catalogue(self) -> list[dict]:
        """The listing; a failure here fails the job (nothing is deleted on a bad listing)."""
        body = self._get(str(self.options.url)).read()
        try:
            items = json.loads(body)["items"]
            return [{"id": str(i["id"]), "name": str(i["name"]), "modified": str(i["modified"]),
                     "href": str(i["href"])} for i in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorError(Code.TRANSIENT, f"the catalogue is not the expected JSON: {exc}") from None

    def _download(self, ctx: JobContext, item: dict) -> Staged | Failed:
        origin, token = self._origin(item["id"]), (item["id"], item["modified"])
        target = ctx.workspace / safe_name(f"{item['id']}-{item['name']}")
        try:
            with self._get(urllib.parse.urljoin(str(self.options.url), item["href"])) as resp, \
                    open(target, "wb") as out:
                digest, size = hashlib.sha256(), 0
                while chunk := resp.read(CHUNK):
                    size += len(chunk)
                    if self.options.max_size is not None and size > self.options.max_size:
                        return Failed(origin, Code.TOO_LARGE, f"over {self.options.max_size} bytes", token=token)
                    digest.update(chunk)
                    out.write(chunk)
        except ConnectorError as exc:
            return Failed(origin, exc.code, exc.message, token=token)
        except (OSError, http.client.HTTPException) as exc:  # cut off mid-download: the next run retries
            return Failed(origin, Code.TRANSIENT, f"download interrupted: {type(exc).__name__}", token=token)
        return Staged(origin_uri=origin, path=target, name=item["name"], identity=item["id"], owned=True,
                      sha256=digest.hexdigest(), size=size, source_modified_at=item["modified"],
                      metadata={"catalogue_id": item["id"]}, token=token)

    def _get(self, url: str):
        try:
            return urllib.request.urlopen(url, timeout=self.options.timeout)
        except urllib.error.HTTPError as exc:
            code = {401: Code.AUTH, 403: Code.PERMISSION, 404: Code.NOT_FOUND, 429: Code.THROTTLED}.get(
                exc.code, Code.TRANSIENT)
            raise ConnectorError(code, f"GET {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectorError(Code.TRANSIENT, f"GET {url}: {getattr(exc, 'reason', exc)}") from None

    def _origin(self, item_id: str) -> str:
        return f"{self.options.url}#{urllib.parse.quote(item_id)}"


def _load(ctx: JobContext) -> dict[str, str]:
    path = ctx.source_state / SEEN
    return json.loads(path.read_text()) if path.exists() else {}
