"""Test-wide settings: one torch thread (small networks gain little from two, and on a shared 2-core machine
oversubscribed threads made training steps ~10x slower), and no progress bars in captured output."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
