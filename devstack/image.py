"""The devstack base image: a busybox root filesystem built and imported locally.

No registry is reachable from a devstack, so ``docker pull busybox`` is not an
option. This module owns building an equivalent image from the host's
``busybox-static`` binary: a tar of ``/bin/busybox``, one ``/bin/<applet>``
symlink per applet, ``/tmp`` (mode 1777), ``/inputs`` and ``/outputs``, imported
with ``PATH=/bin`` and a default command of ``sh``.

``python -m devstack.image [TAG]`` builds it (if absent) and says what it did.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

import docker
import docker.errors
from docker.utils import parse_repository_tag

DEFAULT_TAG = "busybox:latest"
_FALLBACK_BUSYBOX = "/bin/busybox"
_IMPORT_CHANGES = ["ENV PATH=/bin", 'CMD ["sh"]']


class BaseImageError(RuntimeError):
    """The base image cannot be built; the message says what to do."""


def find_busybox() -> Path:
    """Path of a busybox binary on this host.

    Raises :class:`BaseImageError` (telling the user to install
    ``busybox-static``) when there is none.
    """
    found = shutil.which("busybox") or _FALLBACK_BUSYBOX
    path = Path(found)
    if not path.is_file():
        raise BaseImageError(
            "no busybox binary found (looked on PATH and at /bin/busybox); "
            "install it with: apt-get install busybox-static"
        )
    return path


def list_applets(busybox: Path) -> list[str]:
    """The applet names ``busybox --list`` prints, in order.

    Raises :class:`BaseImageError` if the binary cannot be run or lists nothing.
    """
    try:
        out = subprocess.run(
            [str(busybox), "--list"], capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BaseImageError(
            f"cannot run {busybox} --list ({exc}); install a static busybox with: "
            "apt-get install busybox-static"
        ) from exc
    applets = [line.strip() for line in out.decode().splitlines() if line.strip()]
    if not applets:
        raise BaseImageError(f"{busybox} --list printed no applets")
    return applets


def _dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info)


def build_rootfs_tar(busybox_binary: bytes, applets: Iterable[str]) -> bytes:
    """An uncompressed tar of a minimal root filesystem, in memory.

    Holds ``bin/busybox`` (mode 0755, the given bytes), a symlink
    ``bin/<applet> -> busybox`` for each applet (skipping ``busybox`` itself,
    duplicates and names containing ``/``), ``tmp`` (mode 1777), ``inputs`` and
    ``outputs`` (0755). Pure: touches neither the disk nor Docker.
    """
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _dir(tar, "bin", 0o755)
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(busybox_binary)
        info.mode = 0o755
        info.mtime = now
        tar.addfile(info, io.BytesIO(busybox_binary))
        seen = {"busybox"}
        for applet in applets:
            if applet in seen or "/" in applet or applet in ("", ".", ".."):
                continue
            seen.add(applet)
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            link.mtime = now
            tar.addfile(link)
        _dir(tar, "tmp", 0o1777)
        _dir(tar, "inputs", 0o755)
        _dir(tar, "outputs", 0o755)
    return buf.getvalue()


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _smoke_test(client: docker.DockerClient, tag: str) -> None:
    """Run ``sh -c 'echo ok'`` in ``tag``; raise :class:`BaseImageError` unless it works."""
    container = client.containers.create(
        tag, ["sh", "-c", "echo ok"], network_mode="none", labels={"py-bacalhau": "1"}
    )
    try:
        container.start()
        status = container.wait(timeout=60)
        out = container.logs(stdout=True, stderr=True)
    finally:
        container.remove(force=True)
    if status.get("StatusCode") != 0 or out.strip() != b"ok":
        raise BaseImageError(
            f"the imported image {tag!r} does not work: exit {status.get('StatusCode')}, "
            f"output {out[:200]!r}"
        )


def ensure_base_image(client: docker.DockerClient | None = None, tag: str = DEFAULT_TAG) -> bool:
    """Make sure an image named ``tag`` exists locally; True if it was built now.

    Returns False without touching anything when the image already exists.
    Otherwise builds the busybox root filesystem and imports it as ``tag``
    (``ENV PATH=/bin``, ``CMD ["sh"]``), then checks that a container of it
    runs ``sh -c 'echo ok'`` (removing the image again if not). A ``client``
    passed in is left open; one created here is closed.

    Raises :class:`BaseImageError` when busybox is missing or the built image
    does not work, and ``docker.errors.DockerException`` when the daemon fails.
    """
    own = client is None
    if client is None:
        client = docker.from_env()
    try:
        if _image_exists(client, tag):
            return False
        busybox = find_busybox()
        data = build_rootfs_tar(busybox.read_bytes(), list_applets(busybox))
        repository, image_tag = parse_repository_tag(tag)
        client.api.import_image_from_data(
            data, repository=repository, tag=image_tag or "latest", changes=_IMPORT_CHANGES
        )
        try:
            _smoke_test(client, tag)
        except BaseException:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(tag, force=True)
            raise
        return True
    finally:
        if own:
            client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.image [TAG]``: build the base image if it is absent."""
    args = sys.argv[1:] if argv is None else argv
    tag = args[0] if args else DEFAULT_TAG
    try:
        built = ensure_base_image(tag=tag)
    except BaseImageError as exc:
        print(f"devstack.image: {exc}", file=sys.stderr)
        return 1
    except docker.errors.DockerException as exc:
        print(f"devstack.image: Docker is not usable: {exc}", file=sys.stderr)
        return 1
    if built:
        print(f"built base image {tag} from the local busybox binary")
    else:
        print(f"base image {tag} already present; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
