"""Reading Graph's drive delta: pages of items from a start URL to the next delta link.

Called directly rather than through the Office 365 client, whose 3.3.0 response parser
drops `@odata.deltaLink`. Links the server returns are only followed on the Graph host
the source is configured for: a link elsewhere would carry our bearer token with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlsplit

from ingestd.errors import Code, ConnectorError

from .http import where


class ResyncRequired(Exception):
    """410 Gone: the delta link is no longer usable; enumerate again from scratch."""

    def __init__(self, code: str | None, location: str | None):
        super().__init__(code or "resyncRequired")
        self.code = code
        self.location = location


def seg(value: str) -> str:
    """An id from the server, made safe as one URL path segment."""
    return quote(value, safe="!")


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


class DeltaReader:
    """Iterate `pages()`; afterwards `delta_link` holds where the next run starts."""

    def __init__(self, http, start: str, graph_url: str, headers: dict | None = None):
        self.http = http
        self.start = start
        self.graph_url = graph_url
        self.headers = headers  # e.g. `Prefer`, sent with every page: a preference holds for the whole walk
        self.delta_link: str | None = None
        self.pages_read = 0

    def pages(self) -> Iterator[list[dict]]:
        url: str | None = self.start
        while url is not None:
            self._check(url)
            status, body, resp = self.http.get_json(url, accept=(410,), check=delta_page_problem, headers=self.headers)
            if status == 410:
                error = body.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                location = resp.headers.get("Location")
                raise ResyncRequired(code, location if location and same_origin(location, self.graph_url) else None)
            self.pages_read += 1
            yield body["value"]
            url = body.get("@odata.nextLink") or None
            if url is None:
                self.delta_link = body["@odata.deltaLink"]
                self._check(self.delta_link)

    def _check(self, url: str) -> None:
        if not same_origin(url, self.graph_url):
            raise ConnectorError(Code.INTERNAL, f"Graph returned a link to {where(url)}, outside graph_url "
                                 f"{self.graph_url}; refusing to send the token there")


def children(http, graph_root: str, drive_id: str, folder_id: str, graph_url: str) -> Iterator[dict]:
    """Every child of a folder (paged), for re-describing files under a renamed folder."""
    url: str | None = f"{graph_root}/drives/{seg(drive_id)}/items/{seg(folder_id)}/children"
    while url is not None:
        if not same_origin(url, graph_url):
            raise ConnectorError(Code.INTERNAL, f"Graph returned a link to {where(url)}, outside graph_url")
        _, body, _ = http.get_json(url, check=page_problem)
        yield from body["value"]
        url = body.get("@odata.nextLink")


def item(http, graph_root: str, drive_id: str, item_id: str, query: str = "") -> dict | None:
    """One item by id; None when it no longer exists."""
    status, body, _ = http.get_json(f"{graph_root}/drives/{seg(drive_id)}/items/{seg(item_id)}{query}",
                                    accept=(404,), check=item_problem)
    return None if status == 404 else body


# What a well-formed answer holds. A body without it came damaged (or from something
# other than Graph, such as a proxy): `Http.get_json` asks for it again.


def page_problem(body: dict) -> str | None:
    if not isinstance(body.get("value"), list):
        return "the page has no 'value' list"
    return None


def delta_page_problem(body: dict) -> str | None:
    problem = page_problem(body)
    if problem is None and not (body.get("@odata.nextLink") or body.get("@odata.deltaLink")):
        problem = "the delta page carries neither @odata.nextLink nor @odata.deltaLink"
    return problem


def item_problem(body: dict) -> str | None:
    return None if isinstance(body.get("id"), str) and body["id"] else "the item has no 'id'"
