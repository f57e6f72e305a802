"""netstep.kernel.rtnl against two references on the real kernel: pyroute2 reading the same
namespace, and iproute2 (`ip`) making the same changes.

rtnl replaced pyroute2 for speed (see its docstring); these tests hold it to what it
replaced. Everything happens in a lab's own namespaces, destroyed after each test.
"""

from __future__ import annotations

import errno
import re
import socket
import struct

import pytest
from pyroute2 import IPRoute

from netstep.kernel import namespaces
from netstep.kernel.rtnl import NetlinkError


def _ip(lab, ns: str, *commands: str) -> None:
    for command in commands:
        result = lab.exec(ns, ["ip", *command.split()])
        assert result.returncode == 0, f"ip {command}: {result.stderr}"


def _pyroute2(lab, ns: str) -> IPRoute:
    sock = namespaces.socket_in(lab.require(ns), socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return IPRoute(fileno=sock.detach())


def _wired(lab) -> None:
    """host: a bridge with two ports, one veth into netns0, addresses, and routes of every shape."""
    lab.add_container("netns0")
    _ip(lab, "host",
        "link add veth0 type veth peer name ceth0 netns " + lab.path_of("netns0"),
        "link add br0 type bridge", "link add veth1 type veth peer name ceth1",
        "link set veth1 master br0", "link set br0 up", "link set veth1 up", "link set ceth1 up",
        "link set veth0 up", "addr add 172.18.0.1/16 dev br0", "addr add 10.1.0.1/24 dev veth0",
        "route add 10.2.0.0/24 via 10.1.0.2 proto boot", "route add 10.3.0.0/24 dev veth0 scope link",
        "route add 10.4.0.0/24 via 10.1.0.2 metric 50 src 10.1.0.1")
    _ip(lab, "netns0", "link set lo up", "link set ceth0 up", "addr add 10.1.0.2/24 dev ceth0")
    result = lab.exec("netns0", ["ping", "-c1", "-W1", "10.1.0.1"])  # fills both neighbour tables
    assert result.returncode == 0, result.stdout + result.stderr


LINK_KEYS = ("index", "flags", "ifname", "IFLA_ADDRESS", "IFLA_MASTER", "IFLA_LINK", "IFLA_LINK_NETNSID",
             "IFLA_OPERSTATE", "IFLA_CARRIER", "kind")
ADDR_KEYS = ("family", "index", "prefixlen", "scope", "IFA_ADDRESS", "IFA_LOCAL", "IFA_LABEL")
ROUTE_KEYS = ("family", "dst_len", "table", "proto", "scope", "type", "flags", "RTA_DST", "RTA_OIF",
              "RTA_GATEWAY", "RTA_PRIORITY", "RTA_PREFSRC", "RTA_TABLE")
NEIGH_KEYS = ("family", "ifindex", "state", "NDA_DST", "NDA_LLADDR", "NDA_MASTER")


def _field(msg, key: str):
    if key == "kind":  # nested: IFLA_LINKINFO's IFLA_INFO_KIND
        info = msg.get("IFLA_LINKINFO")
        return info.get("IFLA_INFO_KIND") if info else None
    return msg.get(key)


def _rows(messages, keys) -> list[tuple]:
    return sorted((tuple(_field(msg, key) for key in keys) for msg in messages), key=repr)


@pytest.mark.parametrize("ns", ["host", "netns0"])
def test_dumps_read_as_pyroute2_reads_them(lab, ns):
    _wired(lab)
    ours, theirs = lab.ipr(ns), _pyroute2(lab, ns)
    try:
        links = _rows(ours.link("dump"), LINK_KEYS)
        assert links == _rows(theirs.link("dump"), LINK_KEYS)
        assert {row[2] for row in links} >= ({"lo", "br0", "veth0", "veth1"} if ns == "host" else {"lo", "ceth0"})
        for family in (socket.AF_INET, socket.AF_UNSPEC):
            assert _rows(ours.addr("dump", family=family), ADDR_KEYS) == _rows(
                theirs.addr("dump", family=family), ADDR_KEYS)
        routes = _rows(ours.route("dump", family=socket.AF_INET, table=254), ROUTE_KEYS)
        assert routes == _rows(theirs.route("dump", family=socket.AF_INET, table=254), ROUTE_KEYS)
        local = _rows(ours.route("dump", family=socket.AF_INET, table=255), ROUTE_KEYS)
        assert local == _rows(theirs.route("dump", family=socket.AF_INET, table=255), ROUTE_KEYS) != []
        assert len(routes) >= (6 if ns == "host" else 1)  # the main table (the local one: above)
        neighbours = _rows(ours.neigh("dump"), NEIGH_KEYS)
        assert neighbours == _rows(theirs.neigh("dump", family=socket.AF_INET), NEIGH_KEYS)
        assert neighbours, "the ping should have left a neighbour entry"
        fdb = _rows(ours.fdb("dump"), NEIGH_KEYS)
        assert fdb == _rows(theirs.fdb("dump"), NEIGH_KEYS)
        assert fdb or ns != "host", "br0's ports should have forwarding entries"
        assert any(row[-3] == "UP" and row[-2] == 1 for row in links), "an up link with carrier"
        for other in ("host", "netns0", "upstream"):
            with open(lab.fd_path(other)) as f:
                assert ours.get_netnsid(fd=f.fileno()) == {"nsid": theirs.get_netnsid(fd=f.fileno()).get("nsid")}
    finally:
        theirs.close()


def test_a_veth_across_namespaces_names_its_peer_by_id(lab):
    _wired(lab)
    veth0 = lab.ipr("host").link("get", ifname="veth0")[0]
    ceth0 = lab.ipr("netns0").link("get", ifname="ceth0")[0]
    assert veth0["index"] == lab.link_index("host", "veth0")
    assert veth0.get("IFLA_LINK") == ceth0["index"]
    with open(lab.fd_path("netns0")) as f:
        assert veth0.get("IFLA_LINK_NETNSID") == lab.ipr("host").get_netnsid(fd=f.fileno())["nsid"] >= 0


def _stack(lab, ns: str) -> list[str]:
    """`ip -d` link, IPv4 address and route listings of `ns`, without what differs between
    two namespaces for no fault of the writer (MAC addresses, indexes, carrier, timers)."""
    out = []
    for what in (["-d", "link"], ["-4", "addr"], ["route"], ["route", "show", "table", "local"]):
        text = lab.exec(ns, ["ip", "-o", *what]).stdout
        text = re.sub(r"\b[0-9a-f]{4}\.[0-9a-f:]+", "BRIDGE-ID", text)  # as 8000.ee:6:a3:74:c3:5b
        text = re.sub(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", "MAC", text)
        text = re.sub(r"^\d+: ", "", text, flags=re.M)
        text = re.sub(r"NO-CARRIER,|,M-DOWN|\bstate \S+|\blinkdown\b", "", text)  # carrier settles in its own time
        text = re.sub(r"@if\d+|link-netns\w* \S+|\b(valid|preferred)_lft \S+", "", text)
        text = re.sub(r"\b(numtxqueues|numrxqueues|addrgenmode|gso_\w+|tso_\w+|gro_\w+) \S+", "", text)
        text = re.sub(r"\b(bridge_id|designated_root|root_id|ageing_time|hello_timer|tcn_timer|"
                      r"topology_change_timer|gc_timer|\w+_timer)\s+\S+", "", text)
        lines = [" ".join(line.split()) for line in text.replace("\\", " ").splitlines()]
        out += lines if what[0] == "route" else sorted(lines)  # routes: the kernel's order is the first match
    return out


def test_changes_leave_what_the_same_ip_commands_leave(lab):
    """Build the same namespace twice, with `ip` and with rtnl: `ip -d` lists the same."""
    lab.add_container("netns0")
    lab.add_container("netns1")
    lab.add_container("peers")
    _ip(lab, "netns0",
        "link add veth0 type veth peer name ceth0", "link add br0 type bridge",
        "link add veth1 type veth peer name ceth1 netns " + lab.path_of("peers"),
        "link set veth0 master br0", "link set br0 up", "link set veth0 up", "link set lo up",
        "addr add 172.18.0.1/16 dev br0", "addr add 10.1.0.1/24 dev veth0", "link set veth1 name veth9",
        "route add 10.2.0.0/24 via 172.18.0.2 proto boot", "route add 10.3.0.0/24 dev br0 scope link proto boot",
        "route append 10.5.0.0/24 via 172.18.0.3 metric 5 src 172.18.0.1",
        "route append 10.5.0.0/24 via 172.18.0.4 metric 5 src 172.18.0.1",
        "addr add 10.9.0.1/24 dev ceth0", "addr del 10.9.0.1/24 dev ceth0",
        "route add 10.6.0.0/24 via 172.18.0.2", "route del 10.6.0.0/24 via 172.18.0.2",
        "link set veth0 nomaster", "link set veth0 master br0", "link set ceth0 up", "link set ceth0 down")
    ipr = lab.ipr("netns1")
    ipr.link("add", ifname="veth0", kind="veth", peer="ceth0")
    ipr.link("add", ifname="br0", kind="bridge")
    with open(lab.fd_path("peers")) as f:
        ipr.link("add", ifname="veth1", kind="veth", peer={"ifname": "ceth1x", "net_ns_fd": f.fileno()})
    index = {name: lab.link_index("netns1", name) for name in ("veth0", "ceth0", "br0", "veth1", "lo")}
    ipr.link("set", index=index["veth0"], master=index["br0"])
    for name in ("br0", "veth0", "lo"):
        ipr.link("set", index=index[name], state="up")
    ipr.addr("add", index=index["br0"], address="172.18.0.1", prefixlen=16)
    ipr.addr("add", index=index["veth0"], address="10.1.0.1", prefixlen=24)
    ipr.link("set", index=index["veth1"], ifname="veth9")
    ipr.route("add", dst="10.2.0.0/24", gateway="172.18.0.2", proto=3)
    ipr.route("add", dst="10.3.0.0/24", oif=index["br0"], scope=253, proto=3)
    for gateway in ("172.18.0.3", "172.18.0.4"):
        ipr.route("append", dst="10.5.0.0/24", gateway=gateway, priority=5, prefsrc="172.18.0.1", proto=3)
    ipr.addr("add", index=index["ceth0"], address="10.9.0.1", prefixlen=24)
    ipr.addr("del", index=index["ceth0"], address="10.9.0.1", prefixlen=24)
    ipr.route("add", dst="10.6.0.0/24", gateway="172.18.0.2", proto=3)
    ipr.route("del", dst="10.6.0.0/24", gateway="172.18.0.2")
    ipr.link("set", index=index["veth0"], master=0)
    ipr.link("set", index=index["veth0"], master=index["br0"])
    ipr.link("set", index=index["ceth0"], state="up")
    ipr.link("set", index=index["ceth0"], state="down")
    # `ip route add` says proto boot by default; rtnl (as pyroute2) takes what it is given.
    expected = [line.replace("ceth1 ", "ceth1x ") for line in _stack(lab, "netns0")]
    assert _stack(lab, "netns1") == expected
    assert "veth9" in " ".join(expected) and "10.5.0.0/24" in " ".join(expected)
    assert lab.link_index("peers", "ceth1x") is not None


def test_refusals_carry_the_kernels_errno(lab):
    ipr = lab.ipr("host")
    with pytest.raises(NetlinkError) as caught:
        ipr.link("get", ifname="nosuch0")
    assert caught.value.code == errno.ENODEV
    assert ipr.link_lookup(ifname="nosuch0") == []
    with pytest.raises(NetlinkError) as caught:
        ipr.link("add", ifname="eth0", kind="bridge")
    assert caught.value.code == errno.EEXIST
    with pytest.raises(NetlinkError) as caught:
        ipr.route("del", dst="10.99.0.0/24", gateway="10.99.0.1")
    assert caught.value.code == errno.ESRCH
    # After a refusal the socket still answers the next request with its own reply.
    assert ipr.link_lookup(ifname="eth0") == [lab.link_index("host", "eth0")]


def test_a_reply_left_unread_does_not_answer_the_next_request(lab):
    """A Ctrl-C between a request and its reply leaves the reply in the socket: the next
    exchange skips it by its sequence number, and leaves nothing behind."""
    ipr = lab.ipr("host")
    eth0 = lab.link_index("host", "eth0")
    ipr.seq += 1  # `get eth0` sent by hand, its answer and acknowledgement never read
    ipr.sock.send(struct.pack("=IHHII", 32, 18, 0x5, ipr.seq, 0) + struct.pack("=BxHiII", 0, 0, eth0, 0, 0))
    assert [m["index"] for m in ipr.link("get", ifname="lo")] == [1]
    with pytest.raises(BlockingIOError):
        ipr.sock.recv(1 << 16, socket.MSG_DONTWAIT)


def _sixty_veths(lab) -> None:
    """Enough links for a dump longer than one datagram from the kernel."""
    _ip(lab, "host", *[f"link add big{i} type veth peer name bigp{i}" for i in range(30)])


def _assert_names_as_ip_lists(lab, names: list[str]) -> None:
    listed = lab.exec("host", ["ip", "-o", "link"]).stdout.splitlines()
    assert names == sorted(line.split(": ")[1].split("@")[0] for line in listed)


def test_a_dump_cut_short_is_read_out_before_the_next(lab):
    """The kernel refuses a dump (EBUSY) while an earlier one on the socket is unread;
    the client reads the old one out and asks again."""
    _sixty_veths(lab)
    ipr = lab.ipr("host")
    ipr.seq += 1
    ipr.sock.send(struct.pack("=IHHII", 32, 18, 0x301, ipr.seq, 0) + bytes(16))
    first = ipr.sock.recv(1 << 16)  # the first part only: sixty veths take several
    assert struct.unpack_from("=IHHII", first)[1] == 16  # RTM_NEWLINK, not the end of the dump
    _assert_names_as_ip_lists(lab, sorted(m.get("ifname") for m in ipr.link("dump")))
    with pytest.raises(BlockingIOError):
        ipr.sock.recv(1 << 16, socket.MSG_DONTWAIT)


def test_arp_tuning_equals_writing_the_sysctl(lab):
    _ip(lab, "host", "link add tuned0 type veth peer name bysysctl0", "link add plain0 type veth peer name plain1")
    lab.tune_link("host", "tuned0")
    written = lab.exec("host", ["sysctl", "-w", "net.ipv4.neigh.bysysctl0.retrans_time_ms=30"])
    assert written.returncode == 0, written.stderr

    def value(dev: str) -> str:
        return lab.exec("host", ["cat", f"/proc/sys/net/ipv4/neigh/{dev}/retrans_time_ms"]).stdout.strip()

    assert value("tuned0") == value("bysysctl0") != value("plain0")
    lab.tune_link("host", "nosuch0")  # a link that is gone is left alone


def test_dumping_many_links_crosses_several_reads(lab):
    _sixty_veths(lab)
    names = sorted(m.get("ifname") for m in lab.ipr("host").link("dump"))
    _assert_names_as_ip_lists(lab, names)
    assert {f"big{i}" for i in range(30)} | {f"bigp{i}" for i in range(30)} <= set(names)
