"""Podman for the deployment tests, set up as ``../shared/design.md`` says it works here.

Everything podman keeps lives in a cache directory of its own (``$CLOISTER_DEPLOY_CACHE``,
default ``~/.cache/cloister-deploy``), never in the machine's podman storage: the Debian
base tarball (keyed by day and apt sources), the image store (so a rerun reuses the built
layers) and the network definitions. Each test run starts its own ``podman system
service`` on a socket in its temporary directory and stops it (by its pid) at the end.

There is no systemd here, so no timer runs health checks: :meth:`Podman.drive_health`
runs ``podman healthcheck run`` for every container still starting, as the timer would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deploy_support import DEPLOY

BASE_IMAGE = "localhost/cloister/python-base:bookworm"
PREFIX = "localhost/cloister"
TAG = "0.1.0"
API_IMAGE = f"{PREFIX}/patients-api:{TAG}"
IMAGES = [f"{PREFIX}/{part}:{TAG}" for part in ("runtime", "cas", "las", "redis")] + [API_IMAGE]


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloister-deploy"
    return Path(os.environ.get("CLOISTER_DEPLOY_CACHE", default))


def missing_tools() -> str | None:
    """Why podman cannot run here, or None."""
    if os.geteuid() != 0:
        return "the podman tests run rootful (root needed: rootless podman needs subuids here)"
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("mmdebstrap", "mmdebstrap"),
                          ("netavark", "netavark"), ("curl", "curl")):
        found = shutil.which(tool) or Path(f"/usr/lib/podman/{tool}").exists()
        if not found:
            return f"{tool} missing (apt-get install {package}; scripts/install-deps does it)"
    return None


class Podman:
    """``podman`` with this test's configuration (containers.conf, storage.conf)."""

    def __init__(self, cache: Path, tmp: Path) -> None:
        self.cache = cache
        self.tmp = tmp
        for sub in ("storage", "run", "libpod", "networks", "base"):
            (cache / sub).mkdir(parents=True, exist_ok=True)
        conf = tmp / "containers.conf"
        # crun fails here on rlimits and hybrid cgroups: runc, explicit ulimits, cgroupfs;
        # no journald: file events; netavark + aardvark-dns: Compose's service names resolve;
        # subnets of their own, so a CNI bridge left on 10.88.0.0/16 does not swallow replies
        conf.write_text(f"""\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{cache}/libpod"
[network]
network_backend = "netavark"
network_config_dir = "{cache}/networks"
default_subnet = "10.213.0.0/24"
default_subnet_pools = [{{"base" = "10.214.0.0/16", "size" = 24}}]
""")
        storage = tmp / "storage.conf"
        storage.write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{cache}/storage"
runroot = "{cache}/run"
""")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf),
                    "CONTAINERS_STORAGE_CONF": str(storage), "CONTAINER_ENGINE": "podman",
                    "BASE_CACHE": str(cache / "base")}
        self.socket = tmp / "podman.sock"
        self._service: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 300,
            **kw: object) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, **kw)  # type: ignore[call-overload]
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def script(self, path: Path, *args: str, timeout: float = 900,
               **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", str(path), *args], capture_output=True, text=True,
                              env={**self.env, **env}, timeout=timeout)
        assert done.returncode == 0, f"{path.name}: exit {done.returncode}\n" \
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done

    def base_image(self) -> None:
        self.script(DEPLOY / "images/debian-base.sh", BASE_IMAGE)

    def cannot_run_containers(self) -> str | None:
        done = self.run("run", "--rm", "--network", "none", BASE_IMAGE, "true", check=False,
                        timeout=120)
        if done.returncode != 0:
            return f"podman cannot run a container here: {done.stderr.strip()[-400:]}"
        return None

    def build_images(self, secrets: Path) -> subprocess.CompletedProcess[str]:
        done = self.script(DEPLOY / "images/build.sh", "--base", BASE_IMAGE, API_IMAGE,
                           PREFIX=PREFIX, TAG=TAG, SECRETS=str(secrets))
        # every source change adds layers: the store keeps a day's build cache, no more
        self.run("image", "prune", "-f", "--filter", "until=24h", check=False)
        return done

    # -- the Docker-compatible API that Compose talks to
    @contextmanager
    def service(self) -> Iterator[str]:
        """``podman system service`` on this test's socket; yields ``DOCKER_HOST``."""
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=(self.tmp / "service.log").open("wb"))
        try:
            deadline = time.monotonic() + 30
            while not self.socket.exists():
                assert self._service.poll() is None, (self.tmp / "service.log").read_text()
                assert time.monotonic() < deadline, "podman system service did not start"
                time.sleep(0.2)
            yield f"unix://{self.socket}"
        finally:
            self._service.terminate()
            try:
                self._service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait()

    # -- health checks without a timer
    def health_once(self, project: str) -> None:
        listed = self.run("ps", "--filter", f"label=com.docker.compose.project={project}",
                          "--format", "{{.Names}}\t{{.Status}}", check=False, timeout=60)
        for line in listed.stdout.splitlines():
            name, _, status = line.partition("\t")
            if "(starting)" in status or "(unhealthy)" in status:
                self.run("healthcheck", "run", name, check=False, timeout=60)

    @contextmanager
    def drive_health(self, project: str, every: float = 1.0) -> Iterator[None]:
        """Run the health checks of ``project``'s containers while the block runs."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self.health_once(project)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=120)

    def remove_project(self, project: str) -> None:
        """Whatever of ``project`` is left (containers, volumes, networks)."""
        label = f"label=com.docker.compose.project={project}"
        ids = self.run("ps", "-aq", "--filter", label, check=False).stdout.split()
        if ids:
            self.run("rm", "-f", "-v", "-t", "0", *ids, check=False)
        vols = self.run("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
        if vols:
            self.run("volume", "rm", "-f", *vols, check=False)
        nets = self.run("network", "ls", "-q", "--filter", label, check=False).stdout.split()
        if nets:
            self.run("network", "rm", "-f", *nets, check=False)


def podman_or_skip(tmp: Path) -> Podman:
    """A :class:`Podman` with the base image built, or ``pytest.skip`` with the reason."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    podman = Podman(cache_dir(), tmp)
    podman.base_image()
    reason = podman.cannot_run_containers()
    if reason:
        pytest.skip(reason)
    return podman
