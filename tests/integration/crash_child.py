"""Child for the crash test: ingests freshly written files in a loop until killed."""

import os
import sys
from pathlib import Path

from ingestd import app
from ingestd._lib import logs
from ingestd.plugin.manager import Plugins

config_path = Path(sys.argv[1])
plugins = Plugins().load()
cfg = app.load_config(config_path, plugins)
logs.setup(level="error")
application = app.App(cfg, plugins)
application.jobs.load_all()
application.jobs.recover()
inbox = cfg.source("inbox").options.path
print("ready", flush=True)
n = 0
while True:
    for i in range(8):
        size = int.from_bytes(os.urandom(2), "big") * 16  # up to 1 MiB: writes take a while
        (inbox / f"f{n}-{i}.bin").write_bytes(os.urandom(size) or b"x")
    application.run_job("inbox", "cli")
    n += 1
