"""Image folders: classes from the folders, bad and hostile files (decompression bombs, symlink
loops) named and skipped, a scan linear in the files whose header checks are cached outside the
dataset, and the ``verify`` tool that decodes everything."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from dataset_files import write_imagefolder, write_png_bomb
from hydra import compose, initialize_config_module
from PIL import Image

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.data import ImageFolderDataModule
from cnnzoo.data.__main__ import main as data_cli
from cnnzoo.data.image_files import cache_dir
from cnnzoo.errors import UserError
from cnnzoo.train import train


@pytest.fixture(autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The header cache goes to a folder of the test's own (not inside ``tmp_path``, where the
    tests write their datasets), never the user's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


class FileCalls:
    """The ``Image.open`` and ``os.stat`` calls made on image files (``.png``/``.jpg``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        self.statted: list[str] = []
        open_, stat = Image.open, os.stat

        def counted_open(path, *args, **kwargs):
            self._record(self.opened, path)
            return open_(path, *args, **kwargs)

        def counted_stat(path, *args, **kwargs):
            self._record(self.statted, path)
            return stat(path, *args, **kwargs)

        monkeypatch.setattr(Image, "open", counted_open)
        monkeypatch.setattr(os, "stat", counted_stat)

    @staticmethod
    def _record(calls: list[str], path) -> None:
        if str(path).endswith((".png", ".jpg")):
            calls.append(str(path))

    def reset(self) -> None:
        self.opened.clear()
        self.statted.clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> FileCalls:
    return FileCalls(monkeypatch)


def _setup(path: Path, **kwargs) -> ImageFolderDataModule:
    datamodule = ImageFolderDataModule(path=str(path), image_size=32, **kwargs)
    datamodule.setup("fit")
    return datamodule


def _break(path: Path) -> None:
    """Overwrite the file's signature, same size, and move its mtime on by a second."""
    stat = path.stat()
    path.write_bytes(b"not an image" + path.read_bytes()[12:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


# --- what is read, and how it is labelled --------------------------------------------------------


def test_image_folder_trains_from_png_and_jpeg_folders(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "pets", suffix=".png")
    write_imagefolder(tmp_path / "pets", suffix=".jpg", mode="L", n_per_class=2)
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=imagefolder",
                "debug=fdr",
                f"data.path={tmp_path / 'pets'}",
                f"paths.output_dir={tmp_path / 'run'}",
                "data.image_size=32",
                "data.batch_size=16",
                "data.num_workers=0",
                "logger=csv",
            ],
        )

    record = train(cfg)

    assert cfg.model.num_classes == 3
    assert "test/acc" in record["metrics"]


def test_imagefolder_classes_come_from_the_folders(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, classes=("a", "b"))
    datamodule = ImageFolderDataModule(path=str(tmp_path), image_size=32)
    assert (datamodule.num_classes, datamodule.class_names) == (2, ("a", "b"))


def test_imagefolder_skips_unreadable_files_with_one_warning_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), mode="RGBA")
    (tmp_path / "cat" / "broken.png").write_bytes(b"not an image")
    datamodule = ImageFolderDataModule(path=str(tmp_path), image_size=32, val_fraction=0.25)

    datamodule.setup("fit")

    assert "broken.png" in caplog.text
    assert len(datamodule.train_set) + len(datamodule.val_set) == 24
    images, _ = next(iter(datamodule._loader(datamodule.train_set, shuffle=False)))
    assert images.shape[1:] == (3, 32, 32)  # RGBA converted to the configured channels

    strict = ImageFolderDataModule(path=str(tmp_path), image_size=32, on_bad_image="error")
    with pytest.raises(UserError, match="broken.png"):
        strict.setup("fit")


def test_imagefolder_names_bad_files_of_all_splits_in_one_warning_of_the_first_20(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, n_per_class=10, size=8)
    for i in range(24):
        (tmp_path / "train" / "cat" / f"bad{i:02}.png").write_bytes(b"")
    (tmp_path / "val" / "dog" / "bad.jpg").write_bytes(b"GIF89a")

    datamodule = _setup(tmp_path)

    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("Skipping 25 files that are not readable images: ")
    assert warning.count(f"{os.sep}bad") == 20 and warning.endswith(" …")
    assert (len(datamodule.train_set), len(datamodule.val_set)) == (30, 30)


def test_imagefolder_survives_a_file_that_fails_to_decode_mid_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), suffix=".jpg", n_per_class=4)
    datamodule = ImageFolderDataModule(path=str(tmp_path), image_size=32, val_fraction=0.25)
    datamodule.setup("fit")
    path = Path(datamodule.train_set.samples[0][0])
    path.write_bytes(path.read_bytes()[:200])  # truncated after the header check

    images, _ = datamodule.train_set[0]

    assert images.shape == (3, 32, 32)
    assert path.name in caplog.text


def test_imagefolder_rejects_empty_classes_and_mismatched_splits(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "empty", splits=())
    (tmp_path / "empty" / "owl").mkdir()
    with pytest.raises(UserError, match="no images: .*owl"):
        ImageFolderDataModule(path=str(tmp_path / "empty")).setup("fit")

    write_imagefolder(tmp_path / "split")
    (tmp_path / "split" / "val" / "fox").rename(tmp_path / "split" / "val" / "wolf")
    with pytest.raises(UserError, match=r"only in val: \['wolf'\]; only in train: \['fox'\]"):
        ImageFolderDataModule(path=str(tmp_path / "split")).setup("fit")


def test_imagefolder_samples_are_in_path_order_with_nested_folders(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, classes=("a", "b"), splits=(), n_per_class=2, size=8)
    nested = tmp_path / "a" / "x" / "0.png"
    nested.parent.mkdir()
    (tmp_path / "a" / "0.png").rename(nested)
    (tmp_path / "a" / "x-1.png").write_bytes((tmp_path / "a" / "2.png").read_bytes())
    (tmp_path / "a" / "notes.txt").write_text("not an image, and not named as one")

    files = ImageFolderDataModule(path=str(tmp_path)).all_files()

    # component by component, as sorting Path objects does (the order fixes the validation split)
    assert [os.path.relpath(path, tmp_path) for path in files] == [
        "a/2.png", "a/x/0.png", "a/x-1.png", "b/1.png", "b/3.png"
    ]  # fmt: skip


# --- hostile files -------------------------------------------------------------------------------

# a bomb PIL refuses (over twice Image.MAX_IMAGE_PIXELS) and one it would only warn of (over once)
BOMBS = {"bomb.png": 20_000, "bomb_warn.png": 10_000}


def _plant_bombs(folder: Path) -> list[Path]:
    """A bomb of each kind and an empty "image" in ``folder``: the files a loader must skip."""
    hostile = [write_png_bomb(folder / name, side) for name, side in BOMBS.items()]
    (folder / "empty.png").write_bytes(b"")
    return [*hostile, folder / "empty.png"]


def test_decompression_bombs_are_skipped_by_the_header_check_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), n_per_class=4, size=8)
    hostile = _plant_bombs(tmp_path / "cat")

    datamodule = _setup(tmp_path, val_fraction=0.25)

    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("Skipping 3 files that are not readable images: ")
    assert all(str(path) in warning for path in hostile)
    assert len(datamodule.train_set) + len(datamodule.val_set) == 12


def test_hostile_files_mid_epoch_are_replaced_by_the_next_sample_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), n_per_class=4, size=8)
    hostile = _plant_bombs(tmp_path / "cat")
    # nothing is opened at setup: every hostile file reaches the loaders
    datamodule = _setup(tmp_path, check_images="none", val_fraction=0.25, augment="none")
    met = 0
    for dataset in (datamodule.train_set, datamodule.val_set):
        n = len(dataset)
        bad = {i for i, (path, _) in enumerate(dataset.samples) if Path(path) in hostile}
        met += len(bad)
        for index in bad:
            image, label = dataset[index]
            # replaced by the first readable sample after it: the same whatever the workers do
            good = next(i % n for i in range(index + 1, index + n) if i % n not in bad)
            expected, expected_label = dataset[good]
            assert torch.equal(image, expected) and label == expected_label
        loader = datamodule._loader(dataset, shuffle=False)
        # a whole epoch: the loader does not die, and no batch is shortened
        assert sum(len(labels) for _, labels in loader) == n
    assert met == len(hostile)
    for path in hostile:
        assert f"Skipping {path}, which cannot be decoded" in caplog.text
    assert "DecompressionBombError" in caplog.text


def test_training_with_unchecked_hostile_files_completes(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "pets", splits=(), n_per_class=6, size=16)
    _plant_bombs(tmp_path / "pets" / "dog")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=imagefolder",
                f"data.path={tmp_path / 'pets'}",
                "data.check_images=none",
                f"paths.output_dir={tmp_path / 'run'}",
                "data.image_size=16",
                "data.batch_size=4",
                "data.num_workers=0",
                "trainer.max_epochs=1",
                "callbacks.rich_progress_bar=null",
                "callbacks.rich_model_summary=null",
                "logger=csv",
            ],
        )

    record = train(cfg)

    assert "test/acc" in record["metrics"]


def test_a_class_folder_linking_back_into_the_dataset_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = write_imagefolder(tmp_path / "pets", splits=(), n_per_class=4, size=8)
    elsewhere = write_imagefolder(tmp_path / "more", ("owl",), 4, splits=(), size=8)
    (dataset / "loop").symlink_to(".")  # would be a class holding every image
    (dataset / "twin").symlink_to(dataset / "cat")  # would be a class with the cats' images
    (dataset / "owl").symlink_to(elsewhere / "owl")  # a class kept on another disk: a class

    datamodule = _setup(dataset, val_fraction=0.25)

    assert datamodule.class_names == ("cat", "dog", "fox", "owl")
    assert len(datamodule.train_set) + len(datamodule.val_set) == 4 * 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{dataset / 'loop'} is a symlink to {dataset.resolve()}, inside the dataset: not "
        "followed (not a class)",
        f"{dataset / 'twin'} is a symlink to {(dataset / 'cat').resolve()}, inside the dataset: "
        "not followed (not a class)",
    ]


# --- the scan: linear, cached, robust ------------------------------------------------------------


def test_setup_opens_each_header_once_then_only_stats_the_files(
    tmp_path: Path, calls: FileCalls
) -> None:
    write_imagefolder(tmp_path, n_per_class=5, size=8)  # 2 splits x 3 classes x 5
    files = sorted(str(path) for path in tmp_path.rglob("*.png"))
    calls.reset()

    first = _setup(tmp_path)

    assert sorted(calls.opened) == files and sorted(calls.statted) == files
    calls.reset()
    second = _setup(tmp_path)  # a new run: a new datamodule, the cache on disk
    assert calls.opened == [] and sorted(calls.statted) == files
    assert second.train_set.samples == first.train_set.samples


def test_setup_work_doubles_when_the_folder_doubles(tmp_path: Path, calls: FileCalls) -> None:
    def first_setup_calls(n_per_class: int) -> tuple[int, int]:
        folder = write_imagefolder(tmp_path / str(n_per_class), n_per_class=n_per_class, size=8)
        calls.reset()
        _setup(folder)
        return len(calls.opened), len(calls.statted)

    small, large = first_setup_calls(10), first_setup_calls(20)

    assert small == (60, 60)  # one header and one stat a file, however large the folder
    assert large == (2 * small[0], 2 * small[1])


def test_a_file_changed_after_caching_is_checked_again(
    tmp_path: Path, calls: FileCalls, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), n_per_class=4, size=8)
    _setup(tmp_path, val_fraction=0.25)
    changed = tmp_path / "dog" / "1.png"
    _break(changed)  # same size, new mtime
    calls.reset()

    datamodule = _setup(tmp_path, val_fraction=0.25)

    assert calls.opened == [str(changed)]
    assert "Skipping 1 files that are not readable images" in caplog.text
    assert changed.name in caplog.text
    assert len(datamodule.train_set) + len(datamodule.val_set) == 11
    calls.reset()
    _setup(tmp_path, val_fraction=0.25)  # the bad file's verdict is cached too
    assert calls.opened == []


@pytest.mark.parametrize("damage", ["truncated", "garbage entries", "another root"])
def test_a_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, cache_home: Path, calls: FileCalls, damage: str
) -> None:
    folder = write_imagefolder(tmp_path / "pets", splits=(), n_per_class=4, size=8)
    _setup(folder)
    (cache,) = cache_dir().glob("*.json")
    assert cache.is_relative_to(cache_home)
    text = cache.read_text()
    entries = json.loads(text)
    if damage == "truncated":
        cache.write_text(text[: len(text) // 2])
    elif damage == "garbage entries":
        cache.write_text(json.dumps({**entries, "files": dict.fromkeys(entries["files"], "?")}))
    else:
        cache.write_text(json.dumps({**entries, "root": "/elsewhere"}))
    calls.reset()

    datamodule = _setup(folder)

    assert len(calls.opened) == 12 and len(datamodule.train_set) + len(datamodule.val_set) == 12
    assert json.loads(cache.read_text()) == entries  # rewritten whole
    calls.reset()
    _setup(folder)
    assert calls.opened == []


def test_an_unwritable_cache_is_skipped_and_the_dataset_folder_left_untouched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    calls: FileCalls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = write_imagefolder(tmp_path / "pets", splits=(), n_per_class=4, size=8)
    before = sorted(folder.rglob("*"))
    folder.chmod(0o555)  # a shared, read-only copy (root may write anyway: the listing checks)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # cnnzoo/ cannot be made under a file
    caplog.set_level(logging.DEBUG, logger="cnnzoo.data.image_files")
    calls.reset()

    try:
        for _ in range(2):
            datamodule = _setup(folder)
            assert len(datamodule.train_set) + len(datamodule.val_set) == 12
    finally:
        folder.chmod(0o755)

    assert len(calls.opened) == 2 * 12  # nothing cached: each setup checks again
    assert "Not caching the header checks" in caplog.text
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert sorted(folder.rglob("*")) == before


def test_check_images_none_trusts_the_file_names(
    tmp_path: Path, calls: FileCalls, caplog: pytest.LogCaptureFixture
) -> None:
    write_imagefolder(tmp_path, splits=(), n_per_class=4, size=8)
    (tmp_path / "cat" / "broken.png").write_bytes(b"not an image")
    calls.reset()

    datamodule = _setup(tmp_path, check_images="none", val_fraction=0.25)

    assert calls.opened == [] and calls.statted == []
    assert len(datamodule.train_set) + len(datamodule.val_set) == 13  # broken.png included
    assert "Skipping" not in caplog.text
    assert not cache_dir().exists()
    with pytest.raises(ValueError, match="data.check_images.*header, none"):
        ImageFolderDataModule(path=str(tmp_path), check_images="decode")


# --- python -m cnnzoo.data verify ---------------------------------------------------------------


def test_verify_reports_no_bad_image_with_status_0(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_imagefolder(tmp_path, n_per_class=2, size=8)

    status = data_cli(["verify", "data=imagefolder", f"data.path={tmp_path}", "--workers", "1"])

    assert status == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all 12 images decode"


def test_verify_decodes_every_image_and_names_the_bad_ones_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_imagefolder(tmp_path, splits=(), suffix=".jpg", n_per_class=4)
    truncated = tmp_path / "cat" / "0.jpg"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: data.index(b"\xff\xda") + 20])  # cut just after the header
    garbage = tmp_path / "fox" / "junk.png"
    garbage.write_bytes(b"not an image")
    datamodule = _setup(tmp_path)
    assert len(datamodule.train_set) + len(datamodule.val_set) == 12  # setup kept the truncated

    from cnnzoo.data.__main__ import main

    status = main(["verify", "data=imagefolder", f"data.path={tmp_path}", "--workers", "2"])

    assert status == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith(str(tmp_path))]
    assert [line.split(":")[0] for line in bad] == [str(truncated), str(garbage)]
    assert "truncated" in bad[0]
    assert out.splitlines()[-1] == "2 of 13 images cannot be decoded"


def test_verify_refuses_datasets_that_are_not_image_folders(
    capsys: pytest.CaptureFixture,
) -> None:
    assert data_cli(["verify", "data=cifar10"]) == 2
    assert "data=imagefolder" in capsys.readouterr().err
