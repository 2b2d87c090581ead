"""Issue 11, output safety: what a step's ``--output`` may replace, and what it refuses.

Every case is the exact reproduction from the issue, run through the step's CLI in-process
(``main(argv)``), and checks the exit code, that the message names the option or path, and that
the user's files are byte-identical after a refused run. The chain of real outputs (dataset →
stats → model → evaluation → report) is built once per module on a tiny synthetic dataset.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from components.evaluate.cli import main as evaluate_main
from components.ingest.cli import main as ingest_main
from components.io import OUTPUT_MARKER, read_output_marker
from components.report.cli import main as report_main
from components.stats.cli import main as stats_main
from components.train import trainer
from components.train.checkpoint import checkpoint_checksum
from components.train.cli import main as train_main
from components.train.step import TrainingError
from tests.fixtures_formats import write_ml100k
from tests.kfp_helpers import TINY_INGEST

REPO = Path(__file__).resolve().parents[1]
MAINS = {
    "ingest": ingest_main,
    "stats": stats_main,
    "train": train_main,
    "evaluate": evaluate_main,
    "report": report_main,
}
STEPS = tuple(MAINS)
INGEST_ARGS = [
    "--source", "synthetic",
    *[a for k, v in TINY_INGEST.items() for a in (f"--{k.replace('_', '-')}", str(v))],
]  # fmt: skip
TRAIN_ARGS = [
    "--epochs", "1", "--max-len", "20", "--d-model", "16", "--n-blocks", "1", "--n-heads", "1",
    "--batch-size", "64", "--threads", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip


def tree(path: Path) -> dict:
    """Every entry under ``path`` (hidden ones too): relative path → sha256 of a file, or 'dir'."""
    if not (path.exists() or path.is_symlink()):
        return {}
    if not path.is_dir():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), path)] = "dir"
        for name in files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, path)] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """Real outputs of every step (through their CLIs), read-only for the tests: copy first."""
    root = tmp_path_factory.mktemp("chain")
    paths = {step: root / step for step in STEPS}
    args = {
        "ingest": INGEST_ARGS,
        "stats": ["--dataset", str(paths["ingest"])],
        "train": [
            "--dataset", str(paths["ingest"]), "--weights", str(paths["stats"] / "weights.json"),
            "--scheme", "inverse", *TRAIN_ARGS,
        ],
        "evaluate": [
            "--dataset", str(paths["ingest"]), "--stats", str(paths["stats"]),
            "--model", str(paths["train"]), "--bootstrap", "10", "--device", "cpu",
        ],
        "report": ["--eval", f"none={paths['evaluate']}", "--bootstrap", "10"],
    }  # fmt: skip
    for step in STEPS:
        assert MAINS[step]([*args[step], "--output", str(paths[step])]) == 0, step
        assert read_output_marker(paths[step])["step"] == step
    return {**paths, "args": args}


def step_argv(chain, step: str, output) -> list[str]:
    return [*chain["args"][step], "--output", str(output)]


def run(step: str, argv: list[str], capsys) -> tuple[int, str]:
    code = MAINS[step](argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def refused(step, argv, capsys, *needles) -> str:
    """Run ``argv``; it must fail with one ``error:`` line holding every needle."""
    code, err = run(step, argv, capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- item 1: an output that is, contains or lies inside an input ----


def test_ingest_output_onto_its_movielens_input_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ml100k(tmp_path / "ml_copy")
    (tmp_path / "ml_copy" / "README").write_text("MovieLens 100K, a copy\n")
    before = tree(tmp_path / "ml_copy")
    for output in ("ml_copy", "ml_copy/out", str(tmp_path / "ml_copy")):
        argv = ["--source", "movielens", "--input", "ml_copy", "--output", output]
        refused("ingest", argv, capsys, f"--output {output}", "input ml_copy")
        assert tree(tmp_path / "ml_copy") == before
    # the parent of the input contains it
    argv = ["--source", "movielens", "--input", "ml_copy", "--output", ".", "--overwrite"]
    refused("ingest", argv, capsys, "--output .", "current directory")
    assert tree(tmp_path / "ml_copy") == before


@pytest.mark.parametrize(
    "step, input_step",
    [
        ("stats", "ingest"),  # stats --dataset D --output D
        ("train", "ingest"),
        ("train", "stats"),  # contains weights.json
        ("evaluate", "train"),  # evaluate --model M --output M
        ("evaluate", "ingest"),
        ("evaluate", "stats"),
        ("report", "evaluate"),  # report --output EVAL_DIR
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_onto_an_input_is_refused_even_with_overwrite(
    chain, step, input_step, overwrite, capsys
):
    target = chain[input_step]
    before = tree(target)
    argv = step_argv(chain, step, target) + (["--overwrite"] if overwrite else [])
    refused(step, argv, capsys, f"--output {target}", "the step's input")
    if (step, input_step) != ("train", "stats"):  # train's input is stats/weights.json
        inside = target / "sub"
        refused(step, step_argv(chain, step, inside), capsys, f"--output {inside}", "lies inside")
    assert tree(target) == before


# ---- item 1: other files, a regular file, another step's output ----


@pytest.mark.parametrize("step", STEPS)
def test_a_directory_of_other_files_is_refused_and_kept(chain, step, tmp_path, capsys):
    some_dir = tmp_path / "some_dir"
    some_dir.mkdir()
    (some_dir / "notes.txt").write_text("my notes\n")
    (some_dir / "thesis").mkdir()
    (some_dir / "thesis" / "chapter1.tex").write_text("\\chapter{One}\n")
    before = tree(some_dir)
    refused(
        step, step_argv(chain, step, some_dir), capsys, f"--output {some_dir}", "notes.txt",
        "thesis", "--overwrite", "not a previous",
    )  # fmt: skip
    assert tree(some_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some_dir"]  # no staging left


@pytest.mark.parametrize("step", STEPS)
def test_a_regular_file_is_refused_and_kept(chain, step, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("precious\n")
    refused(
        step, step_argv(chain, step, afile), capsys, f"--output {afile}", "is a file", "--overwrite"
    )
    assert afile.read_text() == "precious\n"
    below = afile / "sub"  # --output whose parent is a file
    refused(step, step_argv(chain, step, below), capsys, f"--output {below}", f"{afile} is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_train_resume_into_a_file_is_refused_even_with_overwrite(chain, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("precious\n")
    argv = step_argv(chain, "train", afile) + ["--resume", "--overwrite"]
    refused("train", argv, capsys, f"--output {afile}", "is a file")
    assert afile.read_text() == "precious\n"


def test_another_steps_output_is_refused(chain, tmp_path, capsys):
    other = copy(chain["ingest"], tmp_path / "dataset_copy")  # not the input: a copy
    before = tree(other)
    refused("stats", step_argv(chain, "stats", other), capsys, f"--output {other}", "ingest step")
    assert tree(other) == before


def test_a_previous_output_holding_extra_files_is_refused(chain, tmp_path, capsys):
    out = copy(chain["stats"], tmp_path / "stats")
    (out / "notes.txt").write_text("added by hand\n")
    before = tree(out)
    refused("stats", step_argv(chain, "stats", out), capsys, f"--output {out}", "notes.txt")
    assert tree(out) == before


@pytest.mark.parametrize("step", STEPS)
def test_a_url_output_is_refused_and_no_local_folder_is_made(
    chain, step, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    refused(step, step_argv(chain, step, "gs://b/x"), capsys, "--output gs://b/x", "gs://")
    assert not list(tmp_path.iterdir())  # never ./gs:


def test_the_current_directory_is_refused(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for output in (".", str(tmp_path), ".."):
        refused("stats", step_argv(chain, "stats", output), capsys, f"--output {output}", "current")
    assert not list(tmp_path.iterdir())


# ---- what is replaced: a previous output of the same step; --overwrite ----


@pytest.mark.parametrize("step", STEPS)
def test_a_previous_output_of_the_same_step_is_replaced_and_stale_staging_cleaned(
    chain, step, tmp_path, capsys
):
    out = copy(chain[step], tmp_path / "out")
    (out / "stale-marker-check").mkdir()  # proves the directory was swapped, not merged
    (out / OUTPUT_MARKER).write_text(
        (chain[step] / OUTPUT_MARKER)
        .read_text()
        .replace('"files": [', '"files": [\n"stale-marker-check",')
    )
    stale = [
        tmp_path / ".out.tmp-abc123",
        tmp_path / ".out.tmp-99999999-xyz",
        tmp_path / ".out.old-1",
    ]
    for path in stale:  # left by a kill -9 (old-style names, a process that is gone)
        path.mkdir()
        (path / "part.parquet").write_bytes(b"half")
    alive = tmp_path / f".out.tmp-{os.getpid()}-mine"  # a live process's: not touched
    alive.mkdir()
    code, err = run(step, step_argv(chain, step, out), capsys)
    assert code == 0, err
    assert not (out / "stale-marker-check").exists()
    assert read_output_marker(out)["step"] == step
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", alive.name])


@pytest.mark.parametrize("step", STEPS)
def test_overwrite_forces_a_file_or_a_foreign_directory(chain, step, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    some_dir = tmp_path / "some_dir"
    some_dir.mkdir()
    (some_dir / "notes.txt").write_text("x\n")
    for output in (afile, some_dir):
        code, err = run(step, [*step_argv(chain, step, output), "--overwrite"], capsys)
        assert code == 0, err
        assert output.is_dir() and read_output_marker(output)["step"] == step
        assert not (output / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "some_dir"]


# ---- item 11: full or read-only disk; Ctrl-C ----


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
@pytest.mark.parametrize("stage", ["create", "write"])
def test_a_full_or_read_only_disk_is_one_line_and_changes_nothing(
    chain, code, stage, tmp_path, capsys, monkeypatch
):
    import components.io as io

    out = copy(chain["stats"], tmp_path / "stats")
    before = tree(out)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "x"))

    # creating the staging directory, or writing into it (the marker is its last file)
    where = {"create": (io.tempfile, "mkdtemp"), "write": (io, "write_output_marker")}[stage]
    monkeypatch.setattr(*where, fail)
    refused("stats", step_argv(chain, "stats", out), capsys, f"--output {out}", os.strerror(code))
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats"]


def test_an_oserror_outside_the_writer_is_one_line(chain, tmp_path, capsys, monkeypatch):
    """A full disk while train --resume writes its checkpoints in place."""
    out = copy(chain["train"], tmp_path / "m")

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "checkpoints" / "last.pt"))

    monkeypatch.setattr(trainer, "save_checkpoint", fail)
    argv = [*step_argv(chain, "train", out), "--resume", "--epochs", "2"]
    refused("train", argv, capsys, str(out / "checkpoints" / "last.pt"), "No space left")


def test_ctrl_c_is_one_line_and_leaves_no_staging(chain, tmp_path):
    out = copy(chain["train"], tmp_path / "m")
    before = tree(out)
    argv = [*chain["args"]["train"], "--output", str(out), "--epochs", "500", "--patience", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "components.train", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".m.tmp-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "train never started"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the epochs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1] == "error: interrupted (Ctrl-C)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert tree(out) == before


# ---- item 2: a failing fresh train run keeps the previous model ----


def test_a_failing_fresh_train_run_keeps_the_previous_model(chain, tmp_path, capsys, monkeypatch):
    out = copy(chain["train"], tmp_path / "m")
    before = tree(out)

    def nan_step(*args, **kwargs):
        raise TrainingError("loss is nan at epoch 1, step 1")

    monkeypatch.setattr(trainer, "train_step", nan_step)
    refused("train", step_argv(chain, "train", out), capsys, "loss is nan")
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---- item 12: checkpoint integrity ----


def _zero_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    # zero a stretch of tensor data (inside the zip, after the pickle): still loads
    start = len(data) // 2
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _not_weights_only(path: Path) -> None:
    import datetime

    torch.save({"when": datetime.date(2020, 1, 1)}, path)


CORRUPTIONS = {
    "zeroed": _zero_middle,
    "truncated": _truncate,
    "empty": _empty,
    "weights-only": _not_weights_only,
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_resume_refuses_a_corrupt_checkpoint(chain, corruption, name, tmp_path, capsys):
    out = copy(chain["train"], tmp_path / "m")
    CORRUPTIONS[corruption](out / "checkpoints" / name)
    before = tree(out)
    argv = [*step_argv(chain, "train", out), "--resume"]
    line = refused(
        "train", argv, capsys, str(out / "checkpoints" / name), "not a valid dwlrec checkpoint"
    )
    assert "weights_only" not in line
    assert tree(out) == before


def test_checkpoints_carry_a_checksum_and_config_the_model_sha256(chain):
    last = torch.load(chain["train"] / "checkpoints" / "last.pt", weights_only=True)
    assert last["checksum"] == checkpoint_checksum(last)
    best = torch.load(chain["train"] / "checkpoints" / "best.pt", weights_only=True)
    assert set(best) == {"model", "checksum"}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_evaluate_refuses_a_corrupt_model(chain, corruption, tmp_path, capsys):
    model = copy(chain["train"], tmp_path / "m")
    CORRUPTIONS[corruption](model / "model.pt")
    argv = [
        *chain["args"]["evaluate"][:4], "--model", str(model), "--output", str(tmp_path / "e"),
    ]  # fmt: skip
    line = refused(
        "evaluate", argv, capsys, str(model / "model.pt"), "not a valid dwlrec checkpoint"
    )
    assert "weights_only" not in line
    assert not (tmp_path / "e").exists()


def test_check_output_skips_absent_inputs_and_accepts_an_in_progress_train_dir(
    tmp_path, monkeypatch
):
    """KFP passes "" for an unused input (cwd may be /); a killed ``--resume`` run's directory
    (marker without a file list) may be replaced by a fresh run."""
    from components.errors import OutputError
    from components.io import check_output, write_output_marker

    monkeypatch.chdir("/")
    out = tmp_path / "out"
    assert check_output(out, "ingest", inputs=("", None, "gs://b/in")) == out
    out.mkdir()
    (out / "checkpoints").mkdir()
    write_output_marker(out, "train", complete=False)
    assert check_output(out, "train") == out
    with pytest.raises(OutputError, match="is the output of the train step, not of evaluate"):
        check_output(out, "evaluate")
    write_output_marker(out, "train")  # complete: lists checkpoints
    (out / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match=r"entries it did not write \(notes.txt\)"):
        check_output(out, "train")
