"""Building the devstack base image with the real Docker daemon."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from devstack.image import ensure_base_image

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    try:
        c = docker.from_env()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker daemon not reachable: {exc}")
    yield c
    c.close()


@pytest.fixture
def tag(client: docker.DockerClient) -> Iterator[str]:
    name = f"pyb-test-busybox:{uuid.uuid4().hex[:12]}"
    yield name
    for c in client.containers.list(all=True, filters={"ancestor": name}):
        c.remove(force=True)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(name, force=True)


def _run(client: docker.DockerClient, tag: str, command: list[str], **kw: object) -> str:
    out = client.containers.run(tag, command, remove=True, network_mode="none", **kw)
    assert isinstance(out, bytes)
    return out.decode()


def test_build_and_use(client: docker.DockerClient, tag: str, tmp_path: Path) -> None:
    assert ensure_base_image(client, tag) is True
    assert ensure_base_image(client, tag) is False  # idempotent
    image = client.images.get(tag)
    assert "PATH=/bin" in image.attrs["Config"]["Env"]

    assert _run(client, tag, ["echo", "hello"]) == "hello\n"
    assert {"bin", "tmp", "inputs", "outputs"} <= set(_run(client, tag, ["ls", "/"]).split())
    assert _run(client, tag, ["stat", "-c", "%a", "/tmp"]).strip() == "1777"

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    _run(
        client,
        tag,
        ["sh", "-c", "echo hi > /outputs/x"],
        volumes={str(outputs): {"bind": "/outputs", "mode": "rw"}},
    )
    assert (outputs / "x").read_text() == "hi\n"
