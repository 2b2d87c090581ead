"""Retries that resume: a train task killed mid-run under kfp.local is retried by the compiled
spec's retry policy and continues from its durable checkpoint instead of starting over."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from pipelines.cli import main as pipeline_cli
from tests.kfp_helpers import TINY_PARAMS, TINY_TRAIN

pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")

PARAMS = {
    **TINY_PARAMS,
    "variants": ["none"],
    "epochs": 8,
    "train_options": {**TINY_TRAIN, "patience": 0},
}


def _train_processes(root: Path) -> list[int]:
    """PIDs of the python processes running a train task's executor of the run under ``root``
    (never another run's, e.g. a pipeline running beside the tests)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(cmdline)
        mine = str(root).encode() in text
        if (
            b"python" in cmdline[0]
            and b"executor_main" in text
            and b"checkpoint_root" in text
            and mine
        ):
            pids.append(int(entry.name))
    return pids


class KillTrainAfterFirstCheckpoint(threading.Thread):
    """Sends SIGKILL to the train task as soon as its first epoch checkpoint exists."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.killed, self.done = root, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if any(self.root.glob("**/none/checkpoints/last.pt")):
                for pid in _train_processes(self.root):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                if self.killed:
                    return
            time.sleep(0.02)


def _run(tmp_path: Path, name: str, capsys) -> tuple[dict, str]:
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(PARAMS))
    root = tmp_path / name
    argv = ["run", "--local", "--pipeline-root", str(root), "--params-file", str(params_file)]
    assert pipeline_cli([*argv, "--retries", "1", "--retry-backoff", "0"]) == 0
    out = capsys.readouterr().out
    return json.loads(out.splitlines()[-2]), out


def _model(summary: dict) -> dict:
    (path,) = Path(summary["run_dir"]).glob("for-loop-*-iteration-0/train/model/model.pt")
    return torch.load(path, weights_only=True)


def test_a_killed_train_task_is_retried_and_resumes_to_the_same_model(tmp_path, capsys):
    killer = KillTrainAfterFirstCheckpoint(tmp_path / "interrupted")
    killer.start()
    try:
        interrupted, out = _run(tmp_path, "interrupted", capsys)
    finally:
        killer.done.set()
    assert killer.killed, "the train task finished before it could be killed"
    assert "FAILED train [none]" in out and "start train [none] (attempt 2)" in out
    train_log = (Path(interrupted["logs"]) / "for-loop-1-iteration-0__train.log").read_text()
    assert "resuming from" in train_log
    config = json.loads(
        next(Path(interrupted["run_dir"]).glob("for-loop-*/train/model/config.json")).read_text()
    )
    assert config["epochs_run"] == PARAMS["epochs"]

    reference, _ = _run(tmp_path, "uninterrupted", capsys)
    resumed, straight = _model(interrupted), _model(reference)
    assert resumed.keys() == straight.keys()
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name
