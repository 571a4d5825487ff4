import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import box as boxmod  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if not boxmod.IMG.exists():
        skip = pytest.mark.skip(reason=f"{boxmod.IMG} not built (run `make`)")
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(skip)
