"""netstep's netlink (pyroute2) against the kernel's own word: `ip -j` and `bridge -j`.

A namespace is built with `ip` and netstep's snapshot of it must say what `ip -j` says;
the same changes made through the lab's pyroute2 clients must leave what `ip` leaves.
Everything happens in a lab's own namespaces, destroyed after each test.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys

import pytest
from support import REPO, needs_root

from netstep.kernel import netlink

pytestmark = needs_root


def _ip(lab, ns: str, *commands: str) -> None:
    for command in commands:
        result = lab.exec(ns, ["ip", *command.split()])
        assert result.returncode == 0, f"ip {command}: {result.stderr}"


def _json(lab, ns: str, *argv: str) -> list[dict]:
    result = lab.exec(ns, list(argv))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def _wired(lab) -> None:
    """host: a bridge with two ports, one veth into netns0, addresses, and routes of every shape."""
    lab.add_container("netns0")
    _ip(lab, "host",
        "link add veth0 type veth peer name ceth0 netns " + lab.path_of("netns0"),
        "link add br0 type bridge", "link add veth1 type veth peer name ceth1",
        "link set veth1 master br0", "link set br0 up", "link set veth1 up", "link set ceth1 up",
        "link set veth0 up", "addr add 172.18.0.1/16 dev br0", "addr add 10.1.0.1/24 dev veth0",
        "route add 10.2.0.0/24 via 10.1.0.2 proto boot", "route add 10.3.0.0/24 dev veth0 scope link",
        "route add 10.4.0.0/24 via 10.1.0.2 metric 50 src 10.1.0.1", "route add unreachable 10.7.0.0/24")
    _ip(lab, "netns0", "link set lo up", "link set ceth0 up", "addr add 10.1.0.2/24 dev ceth0",
        "route add default via 10.1.0.1")
    result = lab.exec("netns0", ["ping", "-c1", "-W1", "10.1.0.1"])  # fills both neighbour tables
    assert result.returncode == 0, result.stdout + result.stderr


def _route_text(r: dict) -> str:
    """A route of `ip -j route` in the words of a snapshot (proto boot is left out there)."""
    text = r["dst"]
    if r.get("gateway"):
        text += f" via {r['gateway']}"
    if r.get("dev"):
        text += f" dev {r['dev']}"
    if r.get("protocol", "boot") != "boot":
        text += f" proto {r['protocol']}"
    if r.get("scope", "global") != "global":
        text += f" scope {r['scope']}"
    if r.get("prefsrc"):
        text += f" src {r['prefsrc']}"
    if r.get("type", "unicast") != "unicast":
        text = f"{r['type']} {text}"
    if r.get("metric"):
        text += f" metric {r['metric']}"
    if "linkdown" in r.get("flags", []):
        text += " linkdown"
    return text


@pytest.mark.parametrize("ns", ["host", "netns0"])
def test_a_snapshot_says_what_ip_says(lab, ns):
    _wired(lab)
    state = lab.snapshot(["host", "netns0"])[ns]
    links = {link.name: link for link in state.links}
    listed = _json(lab, ns, "ip", "-j", "-d", "link")
    assert sorted(links) == sorted(entry["ifname"] for entry in listed)
    for entry in listed:
        link = links[entry["ifname"]]
        kind = entry.get("linkinfo", {}).get("info_kind") or ("loopback" if entry["ifname"] == "lo" else "ether")
        assert (link.kind, link.up, link.master, link.mac) == (
            kind, "UP" in entry["flags"], entry.get("master"), entry["address"])
        if kind == "veth" and "link_netnsid" not in entry:
            assert link.peer == entry["link"]
    if ns == "host":
        assert links["veth0"].peer == "ceth0@netns0" and links["veth1"].peer == "ceth1"
    addresses = [f"{a['ifname']} {i['local']}/{i['prefixlen']}"
                 for a in _json(lab, ns, "ip", "-j", "-4", "addr") for i in a["addr_info"]]
    assert sorted(state.addresses) == sorted(addresses)
    assert list(state.routes) == [_route_text(r) for r in _json(lab, ns, "ip", "-j", "route")]  # in order
    neighbours = [f"{n['dst']} dev {n['dev']} lladdr {n.get('lladdr', '(none)')} {n['state'][0]}"
                  for n in _json(lab, ns, "ip", "-j", "-4", "neigh") if n["state"][0] != "NOARP"]
    assert list(state.neighbours) == sorted(neighbours) != []
    fdb = [f"{e['mac']} dev {e['ifname']} master {e['master']} {e.get('state') or 'learned'}"
           for e in _json(lab, ns, "bridge", "-j", "fdb", "show") if e.get("master")
           and not e["mac"].startswith(("33:33", "01:00:5e"))]
    assert list(state.fdb) == sorted(fdb)
    assert state.fdb or ns != "host", "br0's ports should have forwarding entries"


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


def test_changes_through_pyroute2_leave_what_the_same_ip_commands_leave(lab):
    """Build the same namespace twice, with `ip` and with the lab's pyroute2 client: `ip -d` lists the same."""
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
    # `ip route add` says proto boot by default; pyroute2 takes what it is given.
    expected = [line.replace("ceth1 ", "ceth1x ") for line in _stack(lab, "netns0")]
    assert _stack(lab, "netns1") == expected
    assert "veth9" in " ".join(expected) and "10.5.0.0/24" in " ".join(expected)
    assert lab.link_index("peers", "ceth1x") is not None


def test_refusals_carry_the_kernels_errno(lab):
    ipr = lab.ipr("host")
    with pytest.raises(netlink.NetlinkError) as caught:
        ipr.link("get", ifname="nosuch0")
    assert caught.value.code == errno.ENODEV
    with pytest.raises(netlink.NetlinkError) as caught:
        ipr.link("add", ifname="eth0", kind="bridge")
    assert caught.value.code == errno.EEXIST
    with pytest.raises(netlink.NetlinkError) as caught:
        ipr.route("del", dst="10.99.0.0/24", gateway="10.99.0.1")
    assert caught.value.code == errno.ESRCH
    # After a refusal the client still answers the next request with its own reply.
    assert ipr.link("get", ifname="eth0")[0]["index"] == lab.link_index("host", "eth0")


def test_one_client_per_namespace_while_the_lab_is_locked(lab):
    assert lab.ipr("host") is lab.ipr("host") is not lab.ipr("upstream")
    for ns in ("host", "upstream"):  # each talks to its own namespace, not this process's
        names = {m.get("ifname") for m in lab.ipr(ns).link("dump")}
        assert names == {"lo", "eth0"}


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
    _ip(lab, "host", *[f"link add big{i} type veth peer name bigp{i}" for i in range(30)])
    names = sorted(m.get("ifname") for m in lab.ipr("host").link("dump"))
    listed = lab.exec("host", ["ip", "-o", "link"]).stdout.splitlines()
    assert names == sorted(line.split(": ")[1].split("@")[0] for line in listed)
    assert {f"big{i}" for i in range(30)} | {f"bigp{i}" for i in range(30)} <= set(names)


# A command run as `python -m netstep ...`, then: was pyroute2 ever imported?
_PROBE = """
import runpy, sys
sys.argv = ["netstep", *sys.argv[1:]]
try:
    runpy.run_module("netstep", run_name="__main__")
except SystemExit:
    pass
print("PYROUTE2" if any(m == "pyroute2" or m.startswith("pyroute2.") for m in sys.modules) else "NONE")
"""


def _imports_pyroute2(*argv: str) -> bool:
    result = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    last = result.stdout.strip().splitlines()[-1]
    assert last in ("PYROUTE2", "NONE"), result.stdout + result.stderr
    return last == "PYROUTE2"


def test_only_netlink_work_loads_pyroute2(make_lab, tmp_path):
    lab = make_lab("imp")
    lab.close()  # built and left for the commands below to reset
    assert not _imports_pyroute2("list")
    assert not _imports_pyroute2("doctor")
    assert not _imports_pyroute2("notebooks", "--out", str(tmp_path))
    assert not _imports_pyroute2("--lab", lab.name, "reset")
    assert not lab.exists()
    assert _imports_pyroute2("--lab", lab.name, "run", "lesson1", "--yes", "--json")  # (the probe is right)
    assert not _imports_pyroute2("--lab", lab.name, "reset")


_LOADED = """
import sys
from netstep.kernel import netlink
client = netlink.iproute_class()
print("ndb" if "pyroute2.ndb.main" in sys.modules else "rtnl only")
from pyroute2 import NDB, IPRoute, NetlinkError
import pyroute2.ndb.main
print(client is IPRoute, NDB is pyroute2.ndb.main.NDB, netlink.NetlinkError is NetlinkError, pyroute2.__version__)
"""


def test_a_client_loads_pyroute2s_rtnetlink_only_and_the_package_stays_whole():
    """netstep's client is pyroute2's own IPRoute, loaded without the package's `__init__`
    (its NDB, IPDB, ...); a caller that asks the package for more still gets all of it."""
    result = subprocess.run([sys.executable, "-c", _LOADED], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "rtnl only"
    assert second.startswith("True True True 0.")
