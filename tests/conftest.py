"""Import serpent_arch before anything imports torch, so its OpenMP setting (GOMP_SPINCOUNT) applies to
every test: on a busy 2-core machine torch's default spin-waiting makes small ops 5-10x slower."""

import pytest

import serpent_arch  # noqa: F401


@pytest.fixture
def single_thread():
    """One torch thread: on a shared, busy CPU multi-threaded forwards stall and the tests would crawl."""
    import torch  # here, not above: serpent_arch first

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
