"""The seeds' way: torchvision dataset with per-image transforms, a DataLoader, a plain loop."""
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms


def seed_lenet5() -> nn.Module:
    """LeNet-5 as the seed notebooks wrote it: 32x32 input (Resize(32)), tanh, average pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


def reference_epoch(model, root, batch_size=32, lr=0.01, momentum=0.9, seed=0) -> float:
    """Seconds for one training epoch through a DataLoader with per-image Resize/ToTensor/Normalize."""
    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.Resize(32), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(str(root), train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start
