"""The dashboard's side of the daemon over real HTTP: its files are served without a token
and under a strict policy, the data it reads is not; `/ui/session` says whether a token is
good without a 401; `/throughput` and the per-source totals count what the daemon did.
(The pages themselves are tested in a real browser: tests/browser/.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ingestd.api import dashboard
from tests.integration.test_api_support import Client, api_setup, wait_taken  # noqa: F401 (fixture)
from tests.support.helpers import wait_for

FILES = {"/": "text/html; charset=utf-8", "/ui/app.js": "text/javascript; charset=utf-8",
         "/ui/app.css": "text/css; charset=utf-8", "/ui/icon.svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def test_the_files_are_public_under_a_strict_policy_and_the_data_is_not(api_setup):
    setup = api_setup.write(token=True)
    d = setup.start(setup.daemon())
    anonymous = setup.client(d, token=None)
    for path, kind in FILES.items():
        r = anonymous.get(path)
        assert r.status == 200 and r.headers["Content-Type"] == kind, (path, r.status, r.data[:200])
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Content-Type-Options"] == "nosniff"
        etag = r.headers["ETag"]
        again = anonymous.get(path, headers={"If-None-Match": etag})
        assert again.status == 304 and again.data == b""
        head = anonymous.call("HEAD", path)
        assert head.status == 200 and head.data == b"" and int(head.headers["Content-Length"]) == len(r.data)
    for path in ("/sources", "/throughput", "/jobs", "/ui/nope.js", "/ui/"):
        anonymous.get(path).error(401, "unauthorized")  # an anonymous client learns no other path
    anonymous.post("/", {"x": 1}).error(405, "method_not_allowed")
    setup.client(d).get("/ui/nope.js").error(404, "not_found")
    assert setup.client(d).get("/throughput").status == 200
    assert d.stop() == 0


def test_ui_session_says_whether_the_token_is_good(api_setup):
    setup = api_setup.write(token=True)
    d = setup.start(setup.daemon())
    good, anonymous = setup.client(d), setup.client(d, token=None)
    assert good.get("/ui/session").json == {"authorized": True}
    assert anonymous.get("/ui/session").json == {"authorized": False}
    bad = anonymous.get("/ui/session", headers={"Authorization": f"Bearer {setup.token}x"})
    assert bad.status == 200 and bad.json == {"authorized": False}
    assert bad.headers["Cache-Control"] == "no-store"
    assert d.stop() == 0
    assert setup.token not in d.log_text()


class _Markup(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style>")
        self.problems += [f"{tag}[{k}]" for k in names if k == "style" or k.startswith("on")]


def test_the_files_hold_no_inline_script_or_style_and_name_no_other_origin():
    markup = _Markup()
    markup.feed(dashboard.asset("index.html").data.decode())
    assert markup.problems == []
    script = dashboard.asset("app.js").data.decode()
    for name in dashboard.TYPES:
        text = dashboard.asset(name).data.decode()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.sub(r"http://www\.w3\.org/2000/svg", "", text)), name
    assert "innerHTML" not in script and "eval(" not in script and "new Function" not in script
    assert "localStorage" not in script  # the token is kept for the tab only (sessionStorage)


def test_throughput_and_totals_count_what_was_ingested(api_setup):
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    client = setup.client(d)
    files = {f"t{i}.txt": b"x" * (100 + i) for i in range(12)}
    for name, data in files.items():
        (setup.inbox / name).write_bytes(data)
    wait_taken(setup, client)
    size = sum(map(len, files.values()))

    def counted():
        w = client.get("/throughput").json
        return w if sum(w["files"]) == len(files) else None

    w = wait_for(counted, timeout=30, message="the ingest to reach a whole slot of /throughput")
    assert w["slot_s"] == 10 and len(w["files"]) == len(w["bytes"]) == len(w["errors"]) == len(w["queue_depth"]) == 359
    assert sum(w["bytes"]) == size and sum(w["errors"]) == 0
    assert w["end"].endswith("0.000Z")  # slots are aligned to the clock's ten seconds
    (inbox,) = client.get("/sources").json["sources"]
    assert (inbox["documents"], inbox["bytes"]) == (len(files), size)
    (setup.inbox / "more.txt").write_bytes(b"y" * 1000)
    wait_for(lambda: client.get("/sources").json["sources"][0]["documents"] == len(files) + 1, timeout=30,
             message="the totals to be recounted once a job finished")
    assert client.get("/sources").json["sources"][0]["bytes"] == size + 1000
    doc = client.get("/openapi.json").json
    assert "/throughput" in doc["paths"] and not any(p == "/" or p.startswith("/ui") for p in doc["paths"])
    assert {"documents", "bytes"} <= set(doc["components"]["schemas"]["SourceInfo"]["required"])
    assert d.stop() == 0
