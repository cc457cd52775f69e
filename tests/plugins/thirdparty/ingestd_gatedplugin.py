"""A third-party connector that holds its job open until the test says so: it reports
what the progress seam asks of a downloading connector (listing, totals, downloading,
bytes), refuses `refuse` items with `permission`, stages the first `before_gate` files,
then waits for the file `gate` to exist (a condition with a deadline) before the rest."""

import shutil
import time

from ingestd.plugin import Code, ConfigPath, Connector, Failed, ScheduleOptions, Staged, hookimpl


class GatedOptions(ScheduleOptions):
    folder: ConfigPath
    gate: ConfigPath
    before_gate: int = 3
    refuse: int = 0


class GatedConnector(Connector):
    kind = "gated"
    Options = GatedOptions

    def stage(self, ctx):
        o = self.options
        ctx.progress.phase("listing")
        files = sorted(o.folder.iterdir())
        ctx.progress.expect(items=len(files) + o.refuse, bytes=sum(p.stat().st_size for p in files))
        ctx.progress.phase("downloading")
        for i in range(o.refuse):
            yield Failed(f"gated://locked/{i}", Code.PERMISSION, "access denied by the remote")
        for n, path in enumerate(files):
            if n == o.before_gate:
                ctx.log.warning("gated connector waiting", gate=str(o.gate))
                _wait_for(o.gate)
            target = ctx.workspace / f"{path.name}.download"
            shutil.copyfile(path, target)
            ctx.progress.advance(bytes=path.stat().st_size)
            yield Staged(origin_uri=f"gated://{path.name}", path=target, name=path.name, owned=True)


def _wait_for(gate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.02)


@hookimpl
def register_connectors(register):
    register(GatedConnector)
