"""Fixtures shared by several test modules, and a network that ends at loopback.

huggingface_hub reads HF_* variables once, at import, so they are set here, before any test module imports it:
offline, and an endpoint on a closed loopback port. Tests that need a Hub start tests/hub_server.py and give
their client processes its address.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """The kernel VAEs run many tiny convolutions, for which one thread is fastest (and immune to a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
