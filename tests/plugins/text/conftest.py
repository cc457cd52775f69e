from pathlib import Path

import pytest

from tests.plugins.text import corpus


@pytest.fixture(scope="session")
def documents(tmp_path_factory) -> list[corpus.Doc]:
    """The generated corpus (220 files), made once for the whole session."""
    return corpus.generate(Path(tmp_path_factory.mktemp("corpus")))
