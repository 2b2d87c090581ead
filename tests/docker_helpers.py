"""What the Docker tests share: a reachable daemon (or a skip) and the base image to build on."""

from __future__ import annotations

import os

import pytest

LOCAL_BASE = "local/debian-python:bookworm"  # what docker/bootstrap-base.sh builds


def docker_client():
    """A docker-py client of a running daemon; the test is skipped without one."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker.errors.DockerException: no daemon / no socket
        pytest.skip(f"no Docker daemon: {exc}")
    return client


def base_image(client, env_vars: tuple[str, ...] = ("BASE_IMAGE",)) -> str:
    """The first of ``env_vars`` that is set, else the local debootstrap base if built, else
    python:3.11-slim (pulled from a registry)."""
    for var in env_vars:
        if os.environ.get(var):
            return os.environ[var]
    try:
        client.images.get(LOCAL_BASE)
        return LOCAL_BASE
    except Exception:
        return "python:3.11-slim"
