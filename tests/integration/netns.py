"""Hosts on one machine for the multi-host test: Linux network namespaces (iproute2), each with its
own address on a private bridge. The bridge lives in a namespace of its own (the switch), so the
hosts' traffic never enters the machine's own network namespace: the veth pairs run from each
host's namespace straight into the switch's, and nothing routes out of the subnet.

    with Network.create(["k1", "pg", "client"], listen_ports=[9092, 5432]) as net:
        net.address("pg")                 # "10.93.17.20"
        ManagedProcess(argv, log, netns=net.namespace("pg"))   # `ip netns exec` (process.py)
        with net.inside("client"):        # this thread's sockets (and its children) are the client's
            httpx.get(f"http://{net.address('gw')}:7373/...")

Deleting the namespaces (on exit, also after a failure) deletes the veths and the bridge in them.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def iproute2_problem() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "the multi-host test needs iproute2's `ip` (apt-get install -y iproute2)"
    if os.geteuid() != 0:
        return "the multi-host test makes network namespaces: it must run as root (CI does)"
    return None


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _subnets_in_use() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this namespace's addresses and routes."""
    found = []
    for line in (ip("-4", "-o", "addr") + ip("-4", "route")).splitlines():
        for word in line.split():
            try:
                found.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                continue
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address or route of this machine's namespace uses."""
    used = _subnets_in_use()
    while True:
        subnet = ipaddress.IPv4Network(f"10.{random.randint(64, 254)}.{random.randint(0, 254)}.0/24")
        if not any(subnet.overlaps(u) for u in used if u.prefixlen > 0):
            return subnet


@dataclass
class Network:
    """Namespaces `godel-<token>-<host>` on the subnet; host n (in the order given) is .n+10."""

    subnet: ipaddress.IPv4Network
    hosts: dict[str, str]
    # Ports the hosts listen on: kept out of their ephemeral range (`ip_local_reserved_ports`), or an
    # outgoing connection made before a service binds (to Kafka, say) can take its port.
    listen_ports: tuple[int, ...] = ()
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, names: Sequence[str], listen_ports: Sequence[int] = ()) -> Network:
        subnet = free_subnet()
        hosts = {name: str(subnet.network_address + 11 + i) for i, name in enumerate(names)}
        net = cls(subnet, hosts, tuple(sorted(set(listen_ports))))
        try:
            net._build()
        except BaseException:
            net.remove()
            raise
        return net

    @property
    def switch(self) -> str:
        return f"godel-{self.token}-switch"

    def namespace(self, host: str) -> str:
        return f"godel-{self.token}-{host}"

    def address(self, host: str) -> str:
        return self.hosts[host]

    def _add(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.made.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            ns, port = self.namespace(host), f"port{i}"
            self._add(ns)
            # Both ends are made inside their namespaces: no veth ever appears in this one.
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.hosts[host]}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            if self.listen_ports:
                reserved = ",".join(map(str, self.listen_ports))
                ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.ip_local_reserved_ports={reserved}")

    @contextmanager
    def inside(self, host: str) -> Iterator[None]:
        """This thread in the host's namespace: the sockets it opens, the threads and processes it
        starts are the host's. Back in its own namespace afterwards."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.namespace(host)}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def remove(self) -> list[str]:
        """Deletes every namespace this network made (their veths and bridge go with them);
        returns those still listed afterwards."""
        for namespace in reversed(self.made):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        listed = ip("netns", "list")
        return [ns for ns in self.made if ns in listed]

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()
