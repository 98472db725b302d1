import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see yopo/__init__.py)

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv1d + Conv2d + Conv3d-free small net covering the prunable types used in tests."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def one_thread():
    """Tiny matrices: threads only add synchronization (and spin badly on a shared CPU)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
