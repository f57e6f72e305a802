"""Actions: one kernel change each, as plain data that knows how to say itself.

An action names where it happens (`ns`, the article's name of a namespace) and what it
does. It does nothing by itself: netstep.ops.apply applies it and, before that, works out
the action that undoes it. Actions travel through the journal as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Action:
    ns: str

    def command(self) -> str:
        """The command a student would type for this action."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The action as JSON-ready data. Fields hold only plain values (no dataclasses), so
        this is asdict without its deep copies, which cost milliseconds per image."""
        return {"type": type(self).__name__, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @staticmethod
    def from_dict(data: dict) -> Action:
        data = dict(data)
        cls = ACTIONS[data.pop("type")]
        kwargs = {}
        for f in fields(cls):
            if f.name in data:  # a field newer than the journal keeps its default
                kwargs[f.name] = _thaw(data[f.name])
        return cls(**kwargs)


def _thaw(value):
    if isinstance(value, list):
        return tuple(_thaw(v) for v in value)
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class AddNetns(Action):
    name: str = ""

    def command(self) -> str:
        return f"ip netns add {self.name}"


@dataclass(frozen=True)
class DeleteNetns(Action):
    name: str = ""

    def command(self) -> str:
        return f"ip netns delete {self.name}"


@dataclass(frozen=True)
class AddLink(Action):
    name: str = ""
    kind: str = "veth"  # veth or bridge
    peer: str = ""
    peer_ns: str = ""  # a veth's other end made straight in this namespace ("" for the same one)

    def command(self) -> str:
        if self.kind == "veth":
            where = f" netns {self.peer_ns}" if self.peer_ns else ""
            return f"ip link add {self.name} type veth peer name {self.peer}{where}"
        return f"ip link add {self.name} type {self.kind}"


@dataclass(frozen=True)
class DeleteLink(Action):
    name: str = ""

    def command(self) -> str:
        return f"ip link delete {self.name}"


@dataclass(frozen=True)
class SetLinkUp(Action):
    name: str = ""
    up: bool = True
    drop: tuple[str, ...] = ()  # on the way down, addresses the way up added (lo's 127.0.0.1/8)
    routes: dict = field(default_factory=dict)  # on the way up, routes the way down removed (dst -> list)

    def command(self) -> str:
        return f"ip link set {self.name} {'up' if self.up else 'down'}"


@dataclass(frozen=True)
class MoveLink(Action):
    name: str = ""
    to: str = ""
    restore: dict = field(default_factory=dict)  # state to give the link after the move (an undo's)

    def command(self) -> str:
        return f"ip link set {self.name} netns {self.to}"


@dataclass(frozen=True)
class SetMaster(Action):
    name: str = ""
    master: str = ""  # "" detaches

    def command(self) -> str:
        return f"ip link set {self.name} master {self.master}" if self.master else f"ip link set {self.name} nomaster"


@dataclass(frozen=True)
class SetMtu(Action):
    """`ip link set NAME mtu N`: the largest packet the link sends; its undo sets the old one."""

    name: str = ""
    mtu: int = 1500

    def command(self) -> str:
        return f"ip link set {self.name} mtu {self.mtu}"


@dataclass(frozen=True)
class Hairpin(Action):
    """`bridge link set dev NAME hairpin on|off`: whether the bridge may send a frame back
    out of the port it came in by (a container reaching itself through the host)."""

    name: str = ""
    on: bool = True

    def command(self) -> str:
        return f"bridge link set dev {self.name} hairpin {'on' if self.on else 'off'}"


@dataclass(frozen=True)
class BridgeFilter(Action):
    """`ip link set NAME type bridge nf_call_iptables 1|0`: one bridge's own switch for
    handing its IPv4 frames to iptables, OR-ed with the namespace's bridge-nf-call-iptables
    (so it can add filtering to one bridge, never exempt one)."""

    name: str = ""
    on: bool = True

    def command(self) -> str:
        return f"ip link set {self.name} type bridge nf_call_iptables {int(self.on)}"


@dataclass(frozen=True)
class Address(Action):
    dev: str = ""
    cidr: str = ""
    add: bool = True

    def command(self) -> str:
        return f"ip addr {'add' if self.add else 'del'} {self.cidr} dev {self.dev}"


@dataclass(frozen=True)
class Route(Action):
    dst: str = "default"
    via: str = ""
    dev: str = ""
    proto: str = ""
    scope: str = ""
    src: str = ""
    add: bool = True

    def command(self) -> str:
        text = f"ip route {'add' if self.add else 'delete'} {self.dst}"
        for word in ("via", "dev", "proto", "scope", "src"):
            if getattr(self, word):
                text += f" {word} {getattr(self, word)}"
        return text


@dataclass(frozen=True)
class Iptables(Action):
    """One iptables invocation; `args` excludes the table (kept in `table`).

    `between`, an undo's or a reconciliation's, holds the rules around one to put back (the
    one before it and the one after it, each in `iptables -S` words after the chain, () at
    an end): it goes back among them, found by their content; its recorded position is
    used where they still stand around it, or when neither is there any more."""

    table: str = "filter"
    args: tuple[str, ...] = ()
    between: tuple[tuple[str, ...], ...] = ()

    def command(self) -> str:
        table = "" if self.table == "filter" else f"-t {self.table} "
        return "iptables " + table + " ".join(_quote(a) for a in self.args)


@dataclass(frozen=True)
class Sysctl(Action):
    key: str = ""
    value: str = ""
    # Settings to put back after the write, as (file under /proc/sys/net, value): an undo's.
    # Writing ip_forward also sets every device's forwarding and all.accept_redirects.
    also: tuple[tuple[str, str], ...] = ()

    def command(self) -> str:
        return f"sysctl -w {self.key}={self.value}"


@dataclass(frozen=True)
class HttpServer(Action):
    address: str = ""
    port: int = 0
    start: bool = True

    def command(self) -> str:
        if self.start:
            return f"python3 -m http.server --bind {self.address} {self.port}"
        return f"(stop the HTTP server on {self.address}:{self.port})"


@dataclass(frozen=True)
class DnsServer(Action):
    """netstep's own small DNS server, typed as dnsmasq is: on `address` port 53 it answers
    `answers` (name, IPv4 address) itself and sends any other question to `forward`."""

    address: str = ""
    answers: tuple[tuple[str, str], ...] = ()
    forward: str = ""
    start: bool = True

    def command(self) -> str:
        if not self.start:
            return f"(stop the DNS server on {self.address})"
        words = ["dnsmasq --keep-in-foreground --no-resolv", f"--listen-address={self.address}"]
        words += [f"--address=/{name}/{ip}" for name, ip in self.answers]
        words += [f"--server={self.forward}"] if self.forward else []
        return " ".join(words)


@dataclass(frozen=True)
class StopServers(Action):
    """`fuser -k PORT/tcp` (the HTTP servers) or `PORT/udp` (the DNS servers): stop the lab's
    servers on PORT in the namespace, as a container is stopped. `restart`, an undo's, holds
    the commands that start them again."""

    port: int = 0
    proto: str = "tcp"
    restart: tuple[str, ...] = ()

    def command(self) -> str:
        if self.restart:
            return "(start again: " + "; ".join(self.restart) + ")"
        return f"fuser -k {self.port}/{self.proto}"


@dataclass(frozen=True)
class EtcFile(Action):
    """A namespace's own resolv.conf, /etc/netns/NETNS/resolv.conf, in the lab's /etc
    (netstep.ops.files): `mkdir -p` its folder, `cp` the host's file there, `echo
    'nameserver ADDR' >` it, `rm -r` the folder. `restore`, an undo's, puts the folder
    (`folder`) and the file (`file`, with `content`) back as they were."""

    netns: str = ""
    op: str = "mkdir"  # mkdir | copy | write | rmdir | restore
    content: str = ""
    folder: bool = False
    file: bool = False

    def command(self) -> str:
        path = f"/etc/netns/{self.netns}"
        return {"mkdir": f"mkdir -p {path}", "copy": f"cp /etc/resolv.conf {path}/resolv.conf",
                "write": f"echo {_quote(self.content.strip())} > {path}/resolv.conf",
                "rmdir": f"rm -r {path}"}.get(self.op, f"(put {path} back as it was)")


@dataclass(frozen=True)
class Restore(Action):
    """Undo of a deletion: rebuild what a DeleteLink or DeleteNetns removed.

    `image` is the state read before the deletion: the namespace (if one was deleted), the
    veth pairs and bridges with both ends' addresses, masters and up state, and the routes
    that used them, in the kernel's order.
    """

    image: dict = field(default_factory=dict)

    def command(self) -> str:
        what = self.image.get("netns") or ", ".join(link["name"] for link in self.image.get("links", ()))
        return f"(restore {what})"


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:,!=" for c in arg) else repr(arg)


ACTIONS = {
    cls.__name__: cls
    for cls in (AddNetns, DeleteNetns, AddLink, DeleteLink, SetLinkUp, MoveLink, SetMaster, Address, Route,
                Iptables, Sysctl, HttpServer, DnsServer, StopServers, EtcFile, Restore, SetMtu, Hairpin,
                BridgeFilter)
}
