"""Make the README's picture of the dashboard: `python -m tests.browser.screenshot docs/dashboard.png`.

A daemon with three sources (two drop folders, one of them fed for about a minute so the
throughput charts have a shape, and an S3 source without credentials, whose scheduled run
fails as it would on a fresh install) and a disabled one, then the Overview in headless
Chromium. Takes about ninety seconds; needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tests.support import browser
from tests.support.helpers import wait_for, write_config
from tests.support.procs import Daemon

FEED_S = 70.0


def main(out: Path) -> None:
    missing = browser.missing()
    if missing:
        sys.exit(f"cannot make the screenshot: {missing}")
    with tempfile.TemporaryDirectory(prefix="ingestd-shot-") as tmp:
        root = Path(tmp)
        for name in ("inbox", "scans"):
            (root / name).mkdir()
        config = write_config(
            root / "ingestd.toml", daemon={"state_dir": "state", "log_format": "json"},
            http={"listen": "127.0.0.1:0"},
            sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.5},
                     {"name": "scans", "kind": "local", "path": "scans", "settle_seconds": 0.5},
                     {"name": "reports", "kind": "s3", "bucket": "acme-reports", "region": "eu-west-1",
                      "every": "1h"},
                     {"name": "archive", "kind": "local", "path": "scans", "enabled": False}])
        daemon = Daemon(config, root / "state", root, env={"AWS_EC2_METADATA_DISABLED": "true"}).start()
        try:
            feed(root)
            with browser.browser(width=1100, height=900) as driver:
                driver.get(daemon.base_url + "/")
                browser.wait_ready(driver, "overview")
                wait_for(lambda: "peak 0.0" not in driver.execute_script(
                    "return document.querySelector('[data-chart=files] svg').getAttribute('aria-label')"),
                    timeout=30, interval=0.5, message="the charts to show the feed")
                driver.save_screenshot(str(out))
        finally:
            daemon.stop()
            daemon.close()
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


def feed(root: Path) -> None:
    """Bursts of files of varied sizes into both folders, unevenly, for about a minute."""
    start, n = time.monotonic(), 0
    while time.monotonic() - start < FEED_S:
        step = int(time.monotonic() - start) // 5
        for folder, count in (("inbox", 5 + (step * 7) % 23), ("scans", (step * 3) % 9)):
            for _ in range(count):
                (root / folder / f"doc-{n:05d}.txt").write_bytes(b"%d " % n * (200 + (n * 37) % 4000))
                n += 1
        time.sleep(5)  # the pace of the feed: what the chart draws, not a wait for anything


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
