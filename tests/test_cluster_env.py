"""The cluster environment → torchrun rendezvous (SPEC §10): every source, every malformed value."""

from __future__ import annotations

import json
import sys

import pytest

from components.errors import ConfigError
from components.train.cluster_env import Rendezvous, detect, torchrun_rendezvous_args
from components.train.launch import torchrun_prefix

TRAINER_V2 = {
    "PET_NNODES": "4",
    "PET_NPROC_PER_NODE": "8",
    "PET_NODE_RANK": "3",
    "PET_MASTER_ADDR": "job-node-0-0.job",
    "PET_MASTER_PORT": "29400",
}
PYTORCHJOB = {
    "MASTER_ADDR": "job-master-0",
    "MASTER_PORT": "23456",
    "WORLD_SIZE": "3",
    "RANK": "1",
}


def vertex(task_type: str = "workerpool1", index: int = 1, **cluster: object) -> dict[str, str]:
    pools = cluster or {"workerpool0": ["host0:2222"], "workerpool1": ["host1:2222", "host2:2222"]}
    spec = {"cluster": pools, "task": {"type": task_type, "index": index}, "environment": "cloud"}
    # Vertex's own RANK/WORLD_SIZE/MASTER_* count differently and must be ignored
    return {
        "CLUSTER_SPEC": json.dumps(spec),
        "RANK": "7",
        "WORLD_SIZE": "9",
        "MASTER_ADDR": "elsewhere",
        "MASTER_PORT": "1",
    }


def test_trainer_v2_reads_the_pet_variables():
    assert detect(TRAINER_V2) == Rendezvous("trainer-v2", 4, 3, "job-node-0-0.job", 29400)


def test_pytorchjob_reads_master_world_size_and_rank():
    assert detect(PYTORCHJOB) == Rendezvous("pytorchjob", 3, 1, "job-master-0", 23456)


def test_a_pytorchjob_that_also_sets_pet_uses_pet():
    # with nprocPerNode the operator's WORLD_SIZE counts processes (6), PET_NNODES the pods (3)
    env = {**PYTORCHJOB, "WORLD_SIZE": "6", "PET_NNODES": "3", "PET_NODE_RANK": "2"}
    assert detect(env) == Rendezvous("trainer-v2", 3, 2, "job-master-0", 23456)


def test_the_pytorchjob_master_pod_is_node_0():
    env = {k: v for k, v in PYTORCHJOB.items() if k != "RANK"} | {"RANK": "0"}
    assert detect(env).node_rank == 0


def test_a_vertex_worker_of_pool_1_index_1_is_node_2_of_3_with_the_chief_as_master():
    assert detect(vertex()) == Rendezvous("vertex", 3, 2, "host0", 2222)


def test_the_vertex_chief_is_node_0_and_a_host_without_port_gets_29500():
    env = vertex("workerpool0", 0, workerpool0=["chief"], workerpool1=["w0:1", "w1:1"])
    assert detect(env) == Rendezvous("vertex", 3, 0, "chief", 29500)


def test_vertex_reduction_servers_are_not_nodes():
    env = vertex(workerpool0=["h0:2222"], workerpool1=["h1:2222", "h2:2222"], workerpool2=["r:1"])
    assert detect(env).nnodes == 3


def test_a_one_host_vertex_job_is_standalone():
    r = detect(vertex("workerpool0", 0, workerpool0=["host0:2222"]))
    assert (r.source, r.nnodes) == ("vertex", 1)
    assert torchrun_rendezvous_args(r) == ["--standalone"]


def test_no_cluster_is_a_single_machine():
    r = detect({"HOME": "/root", "PATH": "/usr/bin", "CLUSTER_SPEC": ""})
    assert r == Rendezvous("single", 1, 0, None, None)
    assert torchrun_rendezvous_args(r) == ["--standalone"]


def test_one_node_from_a_cluster_is_standalone():
    r = detect({"PET_NNODES": "1", "PET_NODE_RANK": "0"})
    assert (r.source, r.nnodes) == ("trainer-v2", 1)
    assert torchrun_rendezvous_args(r) == ["--standalone"]


def test_multi_node_args():
    assert torchrun_rendezvous_args(detect(vertex())) == [
        "--nnodes=3",
        "--node-rank=2",
        "--master-addr=host0",
        "--master-port=2222",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**TRAINER_V2, "PET_NNODES": "two"}, r"PET_NNODES='two': must be a number of nodes >= 1"),
        ({**TRAINER_V2, "PET_NNODES": "1:4"}, r"PET_NNODES='1:4'"),
        ({**TRAINER_V2, "PET_NNODES": "0"}, r"PET_NNODES='0'"),
        ({**TRAINER_V2, "PET_NODE_RANK": "x"}, r"PET_NODE_RANK='x': must be a node rank >= 0"),
        ({**TRAINER_V2, "PET_NODE_RANK": "-1"}, r"PET_NODE_RANK='-1'"),
        ({**TRAINER_V2, "PET_NODE_RANK": "4"}, r"PET_NODE_RANK=4: must be a node rank 0-3"),
        ({**TRAINER_V2, "PET_MASTER_PORT": "99999"}, r"PET_MASTER_PORT='99999': must be a port"),
        ({**TRAINER_V2, "PET_MASTER_PORT": "http"}, r"PET_MASTER_PORT='http'"),
        (
            {k: v for k, v in TRAINER_V2.items() if k != "PET_MASTER_ADDR"},
            r"PET_MASTER_ADDR is not set: a 4-node job needs the master's host",
        ),
        (
            {k: v for k, v in TRAINER_V2.items() if k != "PET_NODE_RANK"},
            r"PET_NODE_RANK is not set",
        ),
        ({**PYTORCHJOB, "WORLD_SIZE": "3.0"}, r"WORLD_SIZE='3.0': must be a number of nodes"),
        ({**PYTORCHJOB, "RANK": "3"}, r"RANK=3: must be a node rank 0-2 \(3 nodes\)"),
        ({**PYTORCHJOB, "MASTER_PORT": "0"}, r"MASTER_PORT='0'"),
        ({**PYTORCHJOB, "MASTER_ADDR": ""}, r"MASTER_ADDR is not set"),
        ({"MASTER_ADDR": "m", "RANK": "0"}, r"WORLD_SIZE is not set"),
        ({"CLUSTER_SPEC": "{not json"}, r"CLUSTER_SPEC is not valid JSON"),
        ({"CLUSTER_SPEC": "[1, 2]"}, r'CLUSTER_SPEC: must be a JSON object with "cluster"'),
        ({"CLUSTER_SPEC": '{"cluster": {}}'}, r'"cluster" and "task"'),
        (
            vertex(workerpool1=["h1:1"]),
            r"CLUSTER_SPEC cluster.workerpool0 is missing or empty: it is the master",
        ),
        (vertex(workerpool0="h0:1"), r"CLUSTER_SPEC cluster.workerpool0='h0:1': must be a list"),
        (vertex(workerpool0=[5]), r"CLUSTER_SPEC workerpool0\[0\]=5: must be 'host' or"),
        (vertex(workerpool0=[":2222"]), r"workerpool0\[0\]=':2222'"),
        (vertex(workerpool0=["h0:port"]), r"CLUSTER_SPEC workerpool0\[0\] port='port'"),
        (vertex("workerpool2", 0), r"task.type='workerpool2': only workerpool0 and workerpool1"),
        (vertex("workerpool3", 0), r"workerpool3 the evaluator"),
        (vertex("workerpool1", 2), r"task.index=2: workerpool1 has 2 hosts \(index 0-1\)"),
        (vertex("workerpool0", 1), r"task.index=1: workerpool0 has 1 hosts"),
        (vertex("workerpool1", -1), r"task.index=-1: must be an integer >= 0"),
    ],
)
def test_malformed_values_are_one_line_config_errors(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        detect(env)
    assert "\n" not in str(info.value)


def test_a_non_integer_vertex_index_is_a_config_error():
    env = vertex()
    spec = json.loads(env["CLUSTER_SPEC"])
    spec["task"]["index"] = "1"
    with pytest.raises(ConfigError, match=r"task.index='1': must be an integer"):
        detect({"CLUSTER_SPEC": json.dumps(spec)})


def test_torchrun_prefix_on_one_machine_is_unchanged():
    assert torchrun_prefix(2, env={"HOME": "/root"}) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
    ]


def test_torchrun_prefix_in_a_multi_node_job():
    assert torchrun_prefix(8, env=TRAINER_V2) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=4",
        "--node-rank=3",
        "--master-addr=job-node-0-0.job",
        "--master-port=29400",
        "--nproc-per-node=8",
    ]


def test_torchrun_prefix_reads_os_environ_by_default(monkeypatch):
    for name in (*TRAINER_V2, *PYTORCHJOB, "CLUSTER_SPEC"):
        monkeypatch.delenv(name, raising=False)
    assert "--standalone" in torchrun_prefix(2)
    for name, value in PYTORCHJOB.items():
        monkeypatch.setenv(name, value)
    assert torchrun_prefix(2)[3:7] == [
        "--nnodes=3",
        "--node-rank=1",
        "--master-addr=job-master-0",
        "--master-port=23456",
    ]


def test_the_train_cli_relaunches_a_cluster_pod_under_multi_node_torchrun(monkeypatch):
    """A PyTorchJob pod has WORLD_SIZE before torchrun starts: `--nproc-per-node 2` must still
    relaunch, with the pod's rendezvous; inside torchrun's own workers it runs in place."""
    from components.train import cli

    launched: list[list[str]] = []
    monkeypatch.setattr(
        cli.subprocess,
        "run",
        lambda cmd, check: launched.append(cmd) or type("R", (), {"returncode": 0}),
    )
    monkeypatch.setattr(cli, "run_cli", lambda *a: "in place")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    for name, value in PYTORCHJOB.items():
        monkeypatch.setenv(name, value)
    argv = ["--dataset", "d", "--output", "o", "--nproc-per-node", "2"]
    assert cli.main(argv) == 0
    assert launched[0][3:8] == [
        "--nnodes=3",
        "--node-rank=1",
        "--master-addr=job-master-0",
        "--master-port=23456",
        "--nproc-per-node=2",
    ]
    assert launched[0][-4:] == ["--dataset", "d", "--output", "o"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-1")
    assert cli.main(argv) == "in place"
    assert len(launched) == 1
