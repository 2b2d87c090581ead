"""Where a train pod stands in its cluster, from its environment (SPEC §10): torchrun's rendezvous.

``detect(env)`` reads what the cluster gives each training pod:

- Kubeflow Trainer v2 ``TrainJob`` (torch-distributed runtime): ``PET_NNODES``, ``PET_NODE_RANK``,
  ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``. torchrun would read ``PET_*`` itself; we translate
  them explicitly so every cluster goes through the same checks and the same arguments.
- Training Operator v1 ``PyTorchJob``: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE`` (pods),
  ``RANK`` (pod index). When it sets ``PET_*`` as well (``nprocPerNode``), ``PET_*`` wins: its
  ``WORLD_SIZE`` then counts processes, not pods.
- Vertex AI custom job: ``CLUSTER_SPEC`` JSON. Its ``RANK``/``WORLD_SIZE`` count nodes
  differently, so they are ignored.
- none of these: one machine.

``torchrun_rendezvous_args`` turns the result into torchrun's arguments. No torch at import time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from components.errors import ConfigError

DEFAULT_MASTER_PORT = 29500  # torchrun's own default, for a master given without a port
# Vertex worker pools that run training: 0 = the chief (one host), 1 = the workers;
# 2 (reduction server) and 3 (evaluator) run other programs
VERTEX_TRAINING_POOLS = ("workerpool0", "workerpool1")


@dataclass(frozen=True)
class Rendezvous:
    """How this node joins the training: ``source`` is ``trainer-v2``, ``pytorchjob``,
    ``vertex`` or ``single``."""

    source: str
    nnodes: int
    node_rank: int
    master_addr: str | None
    master_port: int | None


SINGLE = Rendezvous("single", nnodes=1, node_rank=0, master_addr=None, master_port=None)


def _value(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]`` stripped; unset and empty both mean absent (a pod spec may set ``""``)."""
    value = env.get(name, "").strip()
    return value or None


def _integer(name: str, text: str, minimum: int, allowed: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name}={text!r}: must be {allowed}")
    return value


def _port(name: str, text: str) -> int:
    port = _integer(name, text, 1, "a port number 1-65535")
    if port > 65535:
        raise ConfigError(f"{name}={text!r}: must be a port number 1-65535")
    return port


def _checked(
    source: str,
    nnodes: int,
    rank: int,
    rank_name: str,
    addr: str | None,
    addr_name: str,
    port: int | None,
) -> Rendezvous:
    """The rendezvous, once the rank fits and a multi-node job names its master."""
    if rank >= nnodes:
        raise ConfigError(
            f"{rank_name}={rank}: must be a node rank 0-{nnodes - 1} ({nnodes} nodes)"
        )
    if nnodes > 1 and addr is None:
        raise ConfigError(f"{addr_name} is not set: a {nnodes}-node job needs the master's host")
    return Rendezvous(source, nnodes, rank, addr, port if port is not None else DEFAULT_MASTER_PORT)


def _from_pet_or_pytorchjob(env: Mapping[str, str]) -> Rendezvous:
    # PET_* first: a TrainJob sets only those; a PyTorchJob sets the plain names, maybe both
    source = "trainer-v2" if _value(env, "PET_NNODES") else "pytorchjob"

    def pick(pet: str, plain: str) -> tuple[str, str | None]:
        for name in (pet, plain):
            value = _value(env, name)
            if value is not None:
                return name, value
        return pet if source == "trainer-v2" else plain, None

    nnodes_name, nnodes_text = pick("PET_NNODES", "WORLD_SIZE")
    rank_name, rank_text = pick("PET_NODE_RANK", "RANK")
    addr_name, addr = pick("PET_MASTER_ADDR", "MASTER_ADDR")
    port_name, port_text = pick("PET_MASTER_PORT", "MASTER_PORT")
    assert nnodes_text is not None  # the caller saw PET_NNODES or WORLD_SIZE
    nnodes = _integer(nnodes_name, nnodes_text, 1, "a number of nodes >= 1")
    if rank_text is None and nnodes > 1:
        raise ConfigError(f"{rank_name} is not set: a {nnodes}-node job needs each node's rank")
    rank = _integer(rank_name, rank_text, 0, "a node rank >= 0") if rank_text else 0
    port = _port(port_name, port_text) if port_text else None
    return _checked(source, nnodes, rank, rank_name, addr, addr_name, port)


def _vertex_host(entry: object) -> tuple[str, int]:
    """``host:port`` (or a bare ``host``) of a CLUSTER_SPEC pool entry."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"CLUSTER_SPEC workerpool0[0]={entry!r}: must be 'host' or 'host:port'")
    host, sep, port = entry.strip().rpartition(":")
    if not sep:
        return port, DEFAULT_MASTER_PORT  # no colon: rpartition puts it all in the last part
    if not host:
        raise ConfigError(f"CLUSTER_SPEC workerpool0[0]={entry!r}: must be 'host' or 'host:port'")
    return host, _port("CLUSTER_SPEC workerpool0[0] port", port)


def _from_vertex(text: str) -> Rendezvous:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"CLUSTER_SPEC is not valid JSON ({exc.msg}): must be Vertex's") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(
            'CLUSTER_SPEC: must be a JSON object with "cluster" and "task" objects (Vertex\'s)'
        )
    pools: dict[str, list] = {}
    for name in VERTEX_TRAINING_POOLS:
        hosts = cluster.get(name, [])
        if not isinstance(hosts, list):
            raise ConfigError(f"CLUSTER_SPEC cluster.{name}={hosts!r}: must be a list of hosts")
        pools[name] = hosts
    if not pools["workerpool0"]:
        raise ConfigError("CLUSTER_SPEC cluster.workerpool0 is missing or empty: it is the master")
    addr, port = _vertex_host(pools["workerpool0"][0])
    nnodes = sum(len(hosts) for hosts in pools.values())
    pool, index = task.get("type"), task.get("index", 0)
    if pool not in VERTEX_TRAINING_POOLS:
        raise ConfigError(
            f"CLUSTER_SPEC task.type={pool!r}: only {' and '.join(VERTEX_TRAINING_POOLS)} train "
            "(workerpool2 is the reduction server, workerpool3 the evaluator)"
        )
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ConfigError(f"CLUSTER_SPEC task.index={index!r}: must be an integer >= 0")
    if index >= len(pools[pool]):
        raise ConfigError(
            f"CLUSTER_SPEC task.index={index}: {pool} has {len(pools[pool])} hosts "
            f"(index 0-{len(pools[pool]) - 1})"
        )
    rank = 0 if pool == "workerpool0" else index + 1  # the chief is node 0, worker i is i + 1
    return _checked(
        "vertex", nnodes, rank, "CLUSTER_SPEC task", addr, "CLUSTER_SPEC workerpool0", port
    )


def detect(env: Mapping[str, str]) -> Rendezvous:
    """This pod's rendezvous from its environment; ConfigError naming the variable at fault."""
    if _value(env, "PET_NNODES") is not None:
        return _from_pet_or_pytorchjob(env)
    cluster_spec = _value(env, "CLUSTER_SPEC")
    if cluster_spec is not None:  # before MASTER_ADDR/WORLD_SIZE: Vertex sets those too
        return _from_vertex(cluster_spec)
    if _value(env, "WORLD_SIZE") is not None or _value(env, "MASTER_ADDR") is not None:
        if _value(env, "WORLD_SIZE") is None:
            raise ConfigError("WORLD_SIZE is not set: MASTER_ADDR is, a PyTorchJob sets both")
        return _from_pet_or_pytorchjob(env)
    return SINGLE


def torchrun_rendezvous_args(r: Rendezvous) -> list[str]:
    """torchrun's rendezvous arguments: ``--standalone`` on one node, else the static master."""
    if r.nnodes == 1:
        return ["--standalone"]
    return [
        f"--nnodes={r.nnodes}",
        f"--node-rank={r.node_rank}",
        f"--master-addr={r.master_addr}",
        f"--master-port={r.master_port}",
    ]
