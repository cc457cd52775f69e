"""Connector classes that break the contract, one per kind (issue 25, items 1, 3, 10 and
11), and one that keeps it. Each broken kind must be refused with its reason when the
plugin loads; the good kind and every other plugin must work.

- `no-options`: no `Options` at all (item 1).
- `no-stage`: never implements `stage()` (item 11).
- `readme-style`: options written like the old README example, without `ScheduleOptions`,
  for a scheduled connector (item 10).
- `broken-dep`: a dependency that raises RuntimeError on import (item 3).
- `contract-ok`: a fine scheduled connector, beside them in the same plugin.
"""

from ingestd.plugin import ConfigPath, Connector, Requirement, ScheduleOptions, Staged, Strict, hookimpl


class NoOptions(Connector):
    kind = "no-options"

    def stage(self, ctx):
        return iter(())


class FolderOptions(ScheduleOptions):
    folder: ConfigPath


class NoStage(Connector):
    kind = "no-stage"
    Options = FolderOptions


class ReadmeOptions(Strict):
    folder: ConfigPath


class ReadmeStyle(Connector):
    kind = "readme-style"
    Options = ReadmeOptions

    def stage(self, ctx):
        return iter(())


class BrokenDep(Connector):
    kind = "broken-dep"
    Options = FolderOptions
    requires = Requirement(("ingestd_brokendep_lib",), "pip install 'ingestd-contractplugin[broken]'")

    def stage(self, ctx):
        return iter(())


class ContractOk(Connector):
    kind = "contract-ok"
    Options = FolderOptions
    description = "every file in a folder"

    def stage(self, ctx):
        for path in sorted(self.options.folder.iterdir()):
            yield Staged(origin_uri=f"ok://{path.name}", path=path, name=path.name)


@hookimpl
def register_connectors(register):
    for cls in (NoOptions, NoStage, ReadmeStyle, BrokenDep, ContractOk):
        register(cls)
