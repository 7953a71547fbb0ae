"""The yardstick: a minimal hand-written PyTorch training loop over in-memory images.

``PlainLoop`` trains a network the way a short script would — cut a batch from the uint8 tensor,
normalise, forward, cross-entropy, backward, Adam step, per-step LR schedule — with no logging,
no metrics and no callbacks. ``python -m benchmarks.plain`` is the whole-run floor: the bare
imports plus LeNet-5 trained on the bundled MNIST sample for ``--epochs`` epochs.
"""

from __future__ import annotations

import time

_START = time.time()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
from importlib.resources import files  # noqa: E402

import hydra  # noqa: E402, F401  (the floor counts the same imports a cnnzoo run needs)
import lightning  # noqa: E402, F401
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402, F401
from omegaconf import OmegaConf  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from cnnzoo.config import CONFIG_MODULE  # noqa: E402
from cnnzoo.optim import warmup_cosine  # noqa: E402

__all__ = ["PlainLoop", "adam_cosine"]


def adam_cosine(
    net: nn.Module, lr: float, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The yardsticks' optimizer: Adam and the warm-up cosine schedule, stepped per batch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    return optimizer, warmup_cosine(optimizer, total_steps=total_steps)


class PlainLoop:
    """One network, its Adam optimizer and cosine schedule, and the images it trains on.

    ``images`` are uint8 ``N x C x H x W`` (on ``device`` already for the GPU-resident case);
    ``mean``/``std`` are ``1 x C x 1 x 1`` in pixel units, as ``TensorImageDataset`` holds them.
    """

    def __init__(
        self,
        net: nn.Module,
        images: Tensor,
        labels: Tensor,
        mean: Tensor,
        std: Tensor,
        *,
        batch_size: int,
        lr: float,
        total_steps: int,
        device: str = "cpu",
        precision: str = "32-true",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net) if compile else self.net
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.mean = mean.to(self.device)
        self.std = std.to(self.device)
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.bf16 = precision == "bf16-mixed"
        self.optimizer, self.scheduler = adam_cosine(self.net, lr, total_steps)
        self._order = torch.empty(0, dtype=torch.long)
        self._next = len(self.labels)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self) -> None:
        """One optimizer step on the next batch of the current epoch's random order."""
        if self._next >= len(self.labels):
            self._order = torch.randperm(len(self.labels), device=self.device)
            self._next = 0
        index = self._order[self._next : self._next + self.batch_size]
        self._next += self.batch_size
        x = (self.images[index].float() - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss = F.cross_entropy(self.forward(x), self.labels[index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()

    def timed_step(self) -> float:
        """``step()``'s seconds (the device synchronised before and after)."""
        self._sync()
        start = time.perf_counter()
        self.step()
        self._sync()
        return time.perf_counter() - start

    def epoch(self) -> float:
        """Train one epoch; return its seconds (the device synchronised at the end)."""
        self.net.train()
        self._sync()
        start = time.perf_counter()
        self._next = len(self.labels)
        for _ in range(-(-len(self.labels) // self.batch_size)):
            self.step()
        self._sync()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    # the default run's batch size, as `python train.py` composes it
    batch_size = OmegaConf.load(files(CONFIG_MODULE) / "data" / "mnist_sample.yaml").batch_size
    parser.add_argument("--batch-size", type=int, default=batch_size)
    args = parser.parse_args()
    imported = time.time()

    from cnnzoo.data.mnist_sample import MNISTSampleDataModule
    from cnnzoo.models.lenet import LeNet5

    torch.manual_seed(42)
    data = MNISTSampleDataModule()
    data.setup("fit")
    train = data.train_set
    steps = args.epochs * -(-len(train) // args.batch_size)
    loop = PlainLoop(
        LeNet5(in_channels=1, num_classes=10),
        train.images,
        train.labels,
        train.mean,
        train.std,
        batch_size=args.batch_size,
        lr=3e-3,
        total_steps=steps,
    )
    train_s = sum(loop.epoch() for _ in range(args.epochs))
    print(
        json.dumps(
            {"import_s": imported - _START, "train_s": train_s, "total_s": time.time() - _START}
        )
    )


if __name__ == "__main__":
    main()
