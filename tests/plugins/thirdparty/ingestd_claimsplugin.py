"""A third-party connector that hands core files it "downloaded" into the job workspace
(`owned=True`), with whatever sha256 and size it claims: `claim = "zeros"` says every
file hashes to "0" * 64, `"none"` claims nothing, `"honest"` tells the truth."""

import hashlib
import shutil

from ingestd.plugin import ConfigPath, Connector, ScheduleOptions, Staged, hookimpl


class ClaimsOptions(ScheduleOptions):
    folder: ConfigPath
    claim: str = "honest"


class ClaimsConnector(Connector):
    kind = "claims"
    Options = ClaimsOptions

    def stage(self, ctx):
        for path in sorted(self.options.folder.iterdir()):
            target = ctx.workspace / f"{path.name}.download"
            shutil.copyfile(path, target)
            data = path.read_bytes()
            sha, size = {"zeros": ("0" * 64, len(data)), "none": (None, None),
                         "honest": (hashlib.sha256(data).hexdigest(), len(data))}[self.options.claim]
            yield Staged(origin_uri=f"claims://{path.name}", path=target, name=path.name, owned=True,
                         sha256=sha, size=size)


@hookimpl
def register_connectors(register):
    register(ClaimsConnector)
