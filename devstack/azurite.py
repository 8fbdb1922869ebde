"""Azurite, the real Azure Storage emulator (npm), as a subprocess for tests and the demo.

Data is persisted to a temporary workspace by default, so ``stop()`` then ``start()`` (an outage)
keeps queued messages, like real storage. ``close()`` stops Azurite and removes that workspace.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

DEFAULT_BINARY = Path(__file__).resolve().parent / "node_modules" / ".bin" / "azurite"
HOST = "127.0.0.1"
ACCOUNT = "devstoreaccount1"
# The emulator's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite is missing, or did not start."""


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held open at once, so the OS cannot hand one out twice."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Azurite:
    """One Azurite process serving blob, queue and table on loopback.

    Ports are picked once (unless given) and kept, so a restart serves the same endpoints.
    With ``persistent=False`` Azurite runs with ``--inMemoryPersistence`` and a restart loses all data.
    """

    def __init__(
        self,
        *,
        blob_port: int | None = None,
        queue_port: int | None = None,
        table_port: int | None = None,
        location: Path | None = None,
        persistent: bool = True,
        binary: Path = DEFAULT_BINARY,
        startup_timeout: float = 30.0,
    ) -> None:
        picked = free_ports(3)
        self.blob_port = blob_port or picked[0]
        self.queue_port = queue_port or picked[1]
        self.table_port = table_port or picked[2]
        self.persistent = persistent
        self.binary = binary
        self.startup_timeout = startup_timeout
        self._location = location
        self._owns_location = location is None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def location(self) -> Path:
        """Azurite's workspace (its database, extents and log); created on first use."""
        if self._location is None:
            self._location = Path(tempfile.mkdtemp(prefix="azurite-"))
        return self._location

    @property
    def blob_url(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start Azurite and return once its queue, table and blob endpoints accept connections."""
        if self.running:
            return
        if not self.binary.exists():
            raise AzuriteError(
                f"Azurite not found at {self.binary}: run `npm install --prefix devstack` "
                "(or `make setup`) from the project root"
            )
        location = self.location
        location.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "--silent",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--disableTelemetry",  # Azurite reports usage to Microsoft unless told not to
            "--location", str(location),
            "--blobHost", HOST, "--blobPort", str(self.blob_port),
            "--queueHost", HOST, "--queuePort", str(self.queue_port),
            "--tableHost", HOST, "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if not self.persistent:
            command.append("--inMemoryPersistence")
        with (location / "azurite.log").open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=location)
        self._wait_until_listening(self._process)
        logger.info("Azurite started pid=%s queue_url=%s", self._process.pid, self.queue_url)

    def _wait_until_listening(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise AzuriteError(
                    f"Azurite exited with code {process.returncode}; see {self.location / 'azurite.log'}"
                )
            try:
                # Every service, not just the queue: the table service can come up a moment later.
                for port in (self.queue_port, self.table_port, self.blob_port):
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AzuriteError(
            f"Azurite did not listen on {HOST}:{self.queue_port} within {self.startup_timeout}s"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Azurite (SIGTERM: it saves its database), keeping the workspace for a restart."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("Azurite pid=%s ignored SIGTERM for %ss; killing it", process.pid, timeout)
            process.kill()
            process.wait()
        logger.info("Azurite stopped pid=%s", process.pid)

    def restart(self) -> None:
        """An outage: stop, then start again on the same ports (persistent data survives)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop Azurite and remove the workspace if this object created it."""
        self.stop()
        if self._owns_location and self._location is not None:
            shutil.rmtree(self._location, ignore_errors=True)
            self._location = None

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
