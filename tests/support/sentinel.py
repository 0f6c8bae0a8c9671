"""A real Redis Sentinel deployment for tests: a primary, a replica and three `redis-sentinel`s.

Failover timings are short (a primary is down after 1 s, a failover may take 5 s) so a test that
kills the primary sees the replica promoted within a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.servers import free_port, wait_for_port

MASTER = "mymaster"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: run `make test` (it installs it with apt-get)"
        )
    return path


def _client(port: int) -> redis.Redis:
    """A short-lived synchronous client (the test's view, not roomkeeper's clients)."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _role(port: int) -> str:
    """`master` or `slave`, as the server itself says."""
    with _client(port) as client:
        role = client.execute_command("ROLE")[0]
        return role.decode() if isinstance(role, bytes) else str(role)


class RedisNode:
    """One redis-server of the group, restartable on the same port (no persistence)."""

    def __init__(self, name: str, replica_of: int | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"roomkeeper-{name}-")
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        args = [
            _binary("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError), _client(self.port) as client:
                if client.ping():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} does not answer PING")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        """SIGSTOP / SIGCONT (a stalled replica) or SIGKILL (a crash)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)
            self.proc = None

    def drop_replicas(self) -> None:
        """Close this server's replication links (a replica that cannot reconnect falls behind)."""
        with _client(self.port) as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def role(self) -> str:
        """`master` or `slave`."""
        return _role(self.port)

    def stop(self) -> None:
        """Stop it if running (a stopped process is continued first so it can exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        """Stop and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, a replica of it and three sentinels monitoring them (quorum 2)."""

    def __init__(self, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        self.primary = RedisNode("primary")
        self.replica = RedisNode("replica", replica_of=self.primary.port)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="roomkeeper-sentinel-"))

    @property
    def sentinels_setting(self) -> str:
        """`ROOMKEEPER_REDIS_SENTINELS` for this group."""
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def start(self) -> None:
        """Start the primary, the replica (in sync before this returns) and the sentinels."""
        self.primary.start()
        self.replica.start()
        self.wait_in_sync(self.primary, self.replica)
        binary = _binary("redis-sentinel")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            proc = subprocess.Popen(
                [binary, str(conf), "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.sentinels.append(proc)
        for port in self.sentinel_ports:
            wait_for_port(port)
        # Every sentinel must know the replica (and each other) before a failover can elect it.
        deadline = time.monotonic() + 20
        while not all(self._sees_replica(p) for p in self.sentinel_ports):
            if time.monotonic() > deadline:
                raise TimeoutError("sentinels did not discover the replica")
            time.sleep(0.1)

    def _sees_replica(self, port: int) -> bool:
        with _client(port) as client:
            replicas = client.sentinel_slaves(MASTER)
            sentinels = client.sentinel_sentinels(MASTER)
        return any(r["port"] == self.replica.port for r in replicas) and len(sentinels) == 2

    def master_port(self, sentinel_port: int | None = None) -> int:
        """The primary's port as a sentinel reports it."""
        with _client(sentinel_port or self.sentinel_ports[0]) as client:
            _, port = client.sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Block until every sentinel names a new primary and it says it is one; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {self.master_port(p) for p in self.sentinel_ports}
            if len(ports) == 1 and old_port not in ports:
                port = ports.pop()
                with contextlib.suppress(redis.RedisError):
                    if _role(port) == "master":
                        return port
            time.sleep(0.05)
        raise TimeoutError(f"no failover away from {old_port} within {timeout} s")

    @staticmethod
    def wait_in_sync(primary: RedisNode, replica: RedisNode, timeout: float = 20.0) -> None:
        """Block until `replica` replicates `primary` with a live link."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), _client(replica.port) as client:
                info = client.info("replication")
                if (
                    info.get("master_port") == primary.port
                    and info.get("master_link_status") == "up"
                ):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{replica.name} not in sync with {primary.name}")

    def cleanup(self) -> None:
        """Stop everything and remove the files."""
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.primary.cleanup()
        self.replica.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
