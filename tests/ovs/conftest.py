import sys
from pathlib import Path

import pytest

# the repository root, so that `tests.ovs.oracle` imports however pytest is started
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ovs.oracle import OvsOracle, missing_tools  # noqa: E402


@pytest.fixture(scope="session")
def oracle():
    why = missing_tools()
    if why:
        pytest.skip(f"differential tests need the real ovs-vsctl: {why}")
    o = OvsOracle()
    try:
        o.start()
        yield o
    finally:
        o.close()
