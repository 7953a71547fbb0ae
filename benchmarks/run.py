"""Measure cnnzoo against a plain PyTorch loop and print the tables: ``python -m benchmarks``.

Sections (``--sections``, default the first three):

- ``overhead``: training images/s through the code ``train.py`` runs (the composed Hydra config,
  instantiated as ``cnnzoo.train.train`` does) against ``PlainLoop`` on the same in-memory data,
  net, optimizer and batch size; epochs alternate A/B in one process and the ratio is the median
  of the per-epoch ratios after a warm-up epoch.
- ``startup``: wall time of ``python train.py`` (the whole default run, and to its first training
  step) against the floor: a bare ``import torch, lightning, torchvision, hydra`` plus the plain
  loop's training time for the same epochs.
- ``data``: images/s the datamodule's training loader delivers alone, against what the model
  consumes (the plain loop's images/s from ``overhead``, when it ran).
- ``help``: how fast ``--help``, ``--cfg job``, ``--info`` and tab completion answer, against
  ``python -c "import hydra"``, and whether they import torch (see ``benchmarks.cli``);
  ``--compare <checkout>`` times another checkout's commands beside these.
- ``imagefolder``: setup time of ``data=imagefolder`` on ``--imagefolder-files`` (100,000) tiny
  PNGs written to a temporary folder: first setup, cached second setup, ``check_images=none``
  (see ``benchmarks.imagefolder``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.cli import HYDRA_IMPORT, measure_cli
from benchmarks.imagefolder import measure_imagefolder_setup
from benchmarks.plain import PlainLoop, adam_cosine
from benchmarks.timing import InterleavedTimer
from cnnzoo.config import CONFIG_MODULE
from cnnzoo.trackers import instantiate_callbacks, instantiate_loggers

__all__ = ["BareLightning", "Case", "compose_train", "measure_overhead", "main"]

ROOT = Path(__file__).resolve().parents[1]
RANDOM_32 = "benchmarks.synthetic.RandomImageDataModule"


@dataclass(frozen=True)
class Case:
    """A model on a dataset: the ``train.py`` overrides that select them."""

    name: str
    overrides: tuple[str, ...]
    epochs: int  # measured epochs, after one warm-up epoch


@dataclass(frozen=True)
class Variant:
    """A way of running the same case: default config, or with parts switched off."""

    name: str
    overrides: tuple[str, ...] = ()
    # not cnnzoo at all: Lightning's own loop with nothing of cnnzoo's (see BareLightning)
    bare: bool = False


CPU_CASES = {
    "lenet": Case("LeNet-5, MNIST sample 1x28x28 (4000 imgs)", ("model=lenet",), 8),
    "resnet20": Case(
        "ResNet-20, random 3x32x32 (512 imgs)",
        (
            "model=resnet20",
            f"data._target_={RANDOM_32}",
            "data.train_size=512",
            "data.val_size=128",
            "data.test_size=128",
        ),
        3,
    ),
}
LIGHTNING = "lightning"
VARIANTS = {
    "default": Variant("default callbacks (rich bar)"),
    "tqdm": Variant("tqdm bar", ("callbacks.rich_progress_bar=null",)),
    "no_bar": Variant(
        "no progress bar",
        ("callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false"),
    ),
    LIGHTNING: Variant("bare Lightning loop: no callbacks, logging or metrics", bare=True),
}


class BareLightning(L.LightningModule):
    """The least a LightningModule can be: forward, cross-entropy, the plain loop's Adam and
    per-step cosine schedule; trained with no logger, callbacks, checkpointing or bar.

    What this reference loses against ``PlainLoop`` is Lightning's own loop (automatic
    optimization, hooks, fetching); what cnnzoo loses beyond it is cnnzoo's.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        lr: float,
        total_steps: int,
        *,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        if compile:
            self.net.compile()
        self.lr = lr
        self.total_steps = total_steps

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = adam_cosine(self.net, self.lr, self.total_steps)
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """``configs/train.yaml`` composed as ``python train.py <overrides>`` would compose it."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@dataclass
class Overhead:
    case: str
    variant: str
    cnnzoo_ips: float
    plain_ips: float
    ratio: float
    ratios: list[float] = field(default_factory=list)


def measure_overhead(
    case: Case,
    variant: Variant,
    *,
    extra: Sequence[str] = (),
    plain_kwargs: dict | None = None,
    per_step: bool = True,
) -> Overhead:
    """Fit ``case`` under ``variant`` for 1 + ``case.epochs`` epochs, the plain loop interleaved."""
    with tempfile.TemporaryDirectory() as out:
        overrides = [
            *case.overrides,
            *variant.overrides,
            *extra,
            f"paths.output_dir={out}",
            f"trainer.max_epochs={1 + case.epochs}",
            "test=false",
        ]
        cfg = compose_train(overrides)
        # the plain loop trains its own copy of the net on the same images (a second datamodule
        # instance: the same split seed gives the same tensors, and cnnzoo's own setup — e.g. the
        # move to the GPU — stays untouched)
        torch.manual_seed(0)
        data = instantiate(cfg.data)
        data.setup("fit")
        train_set = data.train_set
        steps = (1 + case.epochs) * -(-len(train_set) // cfg.data.batch_size)
        plain = PlainLoop(
            instantiate(cfg.model.net),
            train_set.images,
            train_set.labels,
            train_set.mean,
            train_set.std,
            batch_size=cfg.data.batch_size,
            lr=cfg.model.optimizer.lr,
            total_steps=steps,
            **(plain_kwargs or {}),
        )
        timer = InterleavedTimer(plain, per_step=per_step)

        L.seed_everything(cfg.seed, verbose=False)
        datamodule = instantiate(cfg.data)
        if variant.bare:
            model = BareLightning(
                instantiate(cfg.model.net),
                cfg.model.optimizer.lr,
                steps,
                channels_last=cfg.model.channels_last,
                compile=cfg.model.compile,
            )
            trainer = L.Trainer(
                accelerator=cfg.trainer.accelerator,
                devices=1,
                precision=cfg.trainer.precision,
                max_epochs=cfg.trainer.max_epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                limit_val_batches=0,
                callbacks=[timer],
            )
        else:
            # what cnnzoo.train.train does, with the timer added to the callbacks
            model = instantiate(cfg.model, _recursive_=False, _convert_="all")
            callbacks = [*instantiate_callbacks(cfg.get("callbacks")), timer]
            loggers = instantiate_loggers(cfg.get("logger"))
            trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
            for logger in trainer.loggers:
                logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        trainer.fit(model, datamodule=datamodule)

    images = len(train_set)
    cnnzoo_s, plain_s = timer.cnnzoo_s[1:], timer.plain_s[1:]  # drop the warm-up epoch
    ratios = [p / c for c, p in zip(cnnzoo_s, plain_s, strict=True)]
    return Overhead(
        case=case.name,
        variant=variant.name,
        cnnzoo_ips=images / statistics.median(cnnzoo_s),
        plain_ips=images / statistics.median(plain_s),
        ratio=statistics.median(ratios),
        ratios=ratios,
    )


def _env(threads: int) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": path,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }


def _timed(args: Sequence[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(start wall-clock time, seconds, stdout) of a subprocess run from the repository root."""
    start = time.time()
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.time() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return start, seconds, result.stdout


def measure_startup(*, repeats: int, threads: int, epochs: int = 10) -> dict[str, float]:
    """Medians over ``repeats`` interleaved rounds of the default run and its floor."""
    env = _env(threads)
    py = sys.executable
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "import",
            "import_cnnzoo",
            "plain_total",
            "plain_train",
            "first_step",
            "train_py",
            "train_py_no_report",
            "ratio",
        )
    }
    for _ in range(repeats):
        rows["import"].append(
            _timed([py, "-c", "import torch, lightning, torchvision, hydra"], env)[1]
        )
        rows["import_cnnzoo"].append(_timed([py, "-c", "import cnnzoo.train"], env)[1])
        _, total, out = _timed([py, "-m", "benchmarks.plain", f"--epochs={epochs}"], env)
        rows["plain_total"].append(total)
        plain_train = float(eval(out.strip().splitlines()[-1].replace("null", "None"))["train_s"])
        rows["plain_train"].append(plain_train)
        with tempfile.TemporaryDirectory() as out_dir:
            mark = Path(out_dir) / "first_step"
            start, wall, _ = _timed(
                [
                    py,
                    "train.py",
                    f"hydra.run.dir={out_dir}/run",
                    f"trainer.max_epochs={epochs}",
                    "+callbacks.first_step._target_=benchmarks.timing.FirstStepMark",
                    f"+callbacks.first_step.path={mark}",
                ],
                env,
            )
            rows["first_step"].append(float(mark.read_text()) - start)
        rows["train_py"].append(wall)
        with tempfile.TemporaryDirectory() as out_dir:
            args = [f"hydra.run.dir={out_dir}", f"trainer.max_epochs={epochs}"]
            no_report = [py, "train.py", *args, "callbacks.test_report=null"]
            rows["train_py_no_report"].append(_timed(no_report, env)[1])
        rows["ratio"].append(wall / (rows["import"][-1] + plain_train))
    return {k: statistics.median(v) for k, v in rows.items()}


def measure_loader(overrides: Sequence[str], *, epochs: int) -> float:
    """Median images/s of the datamodule's training loader alone (after one warm-up epoch)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_train([*overrides, f"paths.output_dir={out}"])
    data = instantiate(cfg.data)
    data.setup("fit")
    loader = data.train_dataloader()
    seconds = []
    for _ in range(1 + epochs):
        start = time.perf_counter()
        count = sum(len(batch[1]) for batch in loader)
        seconds.append(time.perf_counter() - start)
    return count / statistics.median(seconds[1:])


LOADERS = {
    "lenet": ("MNIST sample, batched in-memory", ("model=lenet",)),
    "resnet20": (
        "random 3x32x32, standard aug, batched",
        (
            "model=resnet20",
            f"data._target_={RANDOM_32}",
            "data.train_size=4096",
            "++data.augment=standard",
        ),
    ),
    "resnet20_workers": (
        "random 3x32x32, standard aug, per-sample + workers",
        (
            "model=resnet20",
            f"data._target_={RANDOM_32}",
            "data.train_size=4096",
            "++data.augment=standard",
            "++data.per_sample_transforms=true",
        ),
    ),
}


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, lightning {L.__version__}"


def _say(lines: list[str], *text: str) -> None:
    """Print table lines as they come (between Lightning's output) and keep them for the end."""
    lines.extend(text)
    print(*text, sep="\n", flush=True)


def _help_table(out: list[str], repeats: int, compare: Path | None) -> None:
    checkouts = [("this checkout", ROOT)]
    if compare is not None:
        checkouts.insert(0, (f"`{compare}`", compare.resolve()))
    results = [measure_cli(root, repeats=repeats) for _, root in checkouts]
    _say(out, f"## Answers without training (medians of {repeats}, seconds; x = ÷ import hydra)\n")
    head = " | ".join(f"{name}: s | x | torch" for name, _ in checkouts)
    _say(out, f"| command | {head} |", "|---|" + "---:|---:|---|" * len(checkouts))
    for label in results[-1]:
        cells = []
        for result in results:
            seconds, torch_imported = result[label]
            ratio = seconds / result[HYDRA_IMPORT.label][0]
            cells.append(f"{seconds:.2f} | {ratio:.1f} | {'yes' if torch_imported else 'no'}")
        _say(out, f"| {label} | {' | '.join(cells)} |")
    _say(out, "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cnnzoo vs a plain PyTorch loop (see README)")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["overhead", "startup", "data"],
        choices=["overhead", "startup", "data", "help", "imagefolder"],
    )
    parser.add_argument("--cases", nargs="+", default=list(CPU_CASES), choices=list(CPU_CASES))
    parser.add_argument(
        "--variants", nargs="+", default=["default", "no_bar", LIGHTNING], choices=list(VARIANTS)
    )
    parser.add_argument("--repeats", type=int, default=3, help="start-up rounds")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, both sides (1: steadier)"
    )
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="scale measured epochs")
    parser.add_argument(
        "--imagefolder-files", type=int, default=100_000, help="image files for `imagefolder`"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="`help`: also time these commands in another cnnzoo checkout (e.g. an older commit)",
    )
    parser.add_argument("--out", help="also write the tables (without Lightning's output) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: list[str] = []
    os.environ.setdefault("WANDB_MODE", "offline")

    _say(out, f"# cnnzoo benchmarks — {time.strftime('%Y-%m-%d %H:%M')}; {_machine()}")
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
    _say(out, f"# torch threads: {args.threads}; command: {command}\n")
    consumed: dict[str, float] = {}
    if "overhead" in args.sections:
        _say(out, "## Training overhead (images/s; ratio = median of per-epoch cnnzoo/plain)\n")
        _say(out, "| case | variant | cnnzoo img/s | plain img/s | ratio | per-epoch ratios |")
        _say(out, "|---|---|---:|---:|---:|---|")
        for key in args.cases:
            case = CPU_CASES[key]
            case = Case(case.name, case.overrides, max(1, round(case.epochs * args.epochs_scale)))
            for variant in args.variants:
                result = measure_overhead(case, VARIANTS[variant])
                consumed[key] = result.plain_ips
                ratios = " ".join(f"{r:.2f}" for r in result.ratios)
                _say(
                    out,
                    f"| {result.case} | {result.variant} | {result.cnnzoo_ips:,.0f} | "
                    f"{result.plain_ips:,.0f} | {result.ratio:.3f} | {ratios} |",
                )
        _say(out, "")
    if "startup" in args.sections:
        r = measure_startup(repeats=args.repeats, threads=args.threads)
        floor = r["import"] + r["plain_train"]
        _say(out, f"## Start-up and the whole default run (medians of {args.repeats}, seconds)\n")
        _say(out, "| measure | s |\n|---|---:|")
        for label, key in (
            ("bare `import torch, lightning, torchvision, hydra`", "import"),
            ("`import cnnzoo.train`", "import_cnnzoo"),
            ("plain loop, 10 epochs LeNet-5 (training only)", "plain_train"),
            ("plain script, whole (`python -m benchmarks.plain`)", "plain_total"),
            ("`python train.py` to its first training step", "first_step"),
            ("`python train.py` whole default run (fit 10 epochs + test)", "train_py"),
            ("the same with `callbacks.test_report=null` (no figures)", "train_py_no_report"),
        ):
            _say(out, f"| {label} | {r[key]:.2f} |")
        _say(out, f"| floor = bare import + plain training | {floor:.2f} |")
        _say(
            out, f"| **whole run / floor** (median of per-round ratios) | **{r['ratio']:.2f}** |\n"
        )
    if "data" in args.sections:
        _say(out, "## Data pipeline (training loader alone vs the model's consumption, images/s)\n")
        _say(
            out, "| loader | loader img/s | model consumes img/s | headroom |\n|---|---:|---:|---:|"
        )
        for key, (label, overrides) in LOADERS.items():
            ips = measure_loader(overrides, epochs=3)
            model = consumed.get(key.split("_")[0])
            headroom = f"{ips / model:.1f}x" if model else "-"
            model_text = f"{model:,.0f}" if model else "-"
            _say(out, f"| {label} | {ips:,.0f} | {model_text} | {headroom} |")
        _say(out, "")
    if "help" in args.sections:
        _help_table(out, args.repeats, args.compare)
    if "imagefolder" in args.sections:
        n = args.imagefolder_files
        _say(out, f"## Image-folder setup ({n:,} 8x8 PNGs in 10 classes, seconds)\n")
        _say(out, "| setup | s | files/s |\n|---|---:|---:|")
        for label, seconds in measure_imagefolder_setup(n).items():
            _say(out, f"| {label} | {seconds:.2f} | {n / seconds:,.0f} |")
        _say(out, "")
    print("\n" + "\n".join(out))
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")
