"""The root-lab tier (marker `lab`): one lab of real libvirt hosts per test session, built by
`vmctl lab up` into a temporary directory and inventory, shared by every test that asks for the
`lab` fixture, and removed by `vmctl lab down` at the end.

Skips with a visible reason without root, without the packages (the reason is vmctl's own
one-line message with the apt-get line), under several xdist workers (one lab per machine:
run `pytest -n 0 -m lab`), or when a lab is already up on this machine.
"""

from __future__ import annotations

import pytest
from lab_helpers import Lab, why_no_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    why = why_no_lab()
    if why:
        pytest.skip(why)
    the_lab = Lab(tmp_path_factory.mktemp("lab"))
    r = the_lab.up()
    if r.rc != 0:
        the_lab.close()
    assert r.rc == 0, r.err
    try:
        yield the_lab
    finally:
        the_lab.close()
