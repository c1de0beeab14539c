"""The seeds' way: torchvision dataset with per-image transforms, a DataLoader, a plain loop."""
import time

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms


def reference_epoch(model, root, batch_size=32, lr=0.01, momentum=0.9, seed=0):
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
