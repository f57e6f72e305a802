"""The command grammar: what a lesson may ask for, and everything it may not.

Pure parsing: nothing here touches the kernel, so these tests need no root.
"""

from __future__ import annotations

import pytest

from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    DeleteLink,
    DeleteNetns,
    DnsServer,
    EtcFile,
    HttpServer,
    Iptables,
    MoveLink,
    Route,
    SetLinkUp,
    SetMaster,
    StopServers,
    Sysctl,
)
from netstep.course.commands import parse, split

# (where, typed command, expected action, expected command() text)
ACCEPTED = [
    ("host", "ip netns add netns0", AddNetns("host", name="netns0"), "ip netns add netns0"),
    ("host", "ip netns delete netns0", DeleteNetns("host", name="netns0"), "ip netns delete netns0"),
    ("host", "ip netns del netns1", DeleteNetns("host", name="netns1"), "ip netns delete netns1"),
    ("host", "sudo ip netns add netns0", AddNetns("host", name="netns0"), "ip netns add netns0"),
    ("host", "ip link add veth0 type veth peer name ceth0",
     AddLink("host", name="veth0", kind="veth", peer="ceth0"), "ip link add veth0 type veth peer name ceth0"),
    ("host", "ip link add br0 type bridge", AddLink("host", name="br0", kind="bridge"),
     "ip link add br0 type bridge"),
    ("host", "ip link set veth0 up", SetLinkUp("host", name="veth0", up=True), "ip link set veth0 up"),
    ("host", "ip link set dev veth0 up", SetLinkUp("host", name="veth0", up=True), "ip link set veth0 up"),
    ("netns0", "ip link set lo down", SetLinkUp("netns0", name="lo", up=False), "ip link set lo down"),
    ("host", "ip link set ceth0 netns netns0", MoveLink("host", name="ceth0", to="netns0"),
     "ip link set ceth0 netns netns0"),
    ("netns0", "ip link set dev ceth0 netns host", MoveLink("netns0", name="ceth0", to="host"),
     "ip link set ceth0 netns host"),
    ("host", "ip link set veth0 master br0", SetMaster("host", name="veth0", master="br0"),
     "ip link set veth0 master br0"),
    ("host", "ip link set dev veth0 nomaster", SetMaster("host", name="veth0", master=""),
     "ip link set veth0 nomaster"),
    ("host", "ip link delete veth0", DeleteLink("host", name="veth0"), "ip link delete veth0"),
    ("host", "ip link del dev br0", DeleteLink("host", name="br0"), "ip link delete br0"),
    ("host", "ip addr add 172.18.0.11/16 dev veth0", Address("host", dev="veth0", cidr="172.18.0.11/16"),
     "ip addr add 172.18.0.11/16 dev veth0"),
    ("netns0", "ip address add 172.18.0.10/16 dev ceth0",
     Address("netns0", dev="ceth0", cidr="172.18.0.10/16"), "ip addr add 172.18.0.10/16 dev ceth0"),
    ("host", "ip addr del 172.18.0.11/16 dev veth0",
     Address("host", dev="veth0", cidr="172.18.0.11/16", add=False), "ip addr del 172.18.0.11/16 dev veth0"),
    ("host", "ip addr delete 172.18.0.1/16 dev br0",
     Address("host", dev="br0", cidr="172.18.0.1/16", add=False), "ip addr del 172.18.0.1/16 dev br0"),
    ("netns0", "ip route add default via 172.18.0.1", Route("netns0", dst="default", via="172.18.0.1"),
     "ip route add default via 172.18.0.1"),
    ("host", "ip route add 10.1.0.0/16 via 172.18.0.10 dev veth0",
     Route("host", dst="10.1.0.0/16", via="172.18.0.10", dev="veth0"),
     "ip route add 10.1.0.0/16 via 172.18.0.10 dev veth0"),
    ("host", "ip route add 172.19.0.0/16 dev veth1", Route("host", dst="172.19.0.0/16", dev="veth1"),
     "ip route add 172.19.0.0/16 dev veth1"),
    ("host", "ip route delete 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11",
     Route("host", dst="172.18.0.0/16", dev="veth0", proto="kernel", scope="link", src="172.18.0.11", add=False),
     "ip route delete 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11"),
    ("netns0", "ip route del default", Route("netns0", dst="default", add=False), "ip route delete default"),
    ("host", "iptables -N ROOT_NS", Iptables("host", table="filter", args=("-N", "ROOT_NS")),
     "iptables -N ROOT_NS"),
    ("host", "iptables --new-chain DOCKER", Iptables("host", table="filter", args=("-N", "DOCKER")),
     "iptables -N DOCKER"),
    ("host", "iptables -t nat -X DOCKER", Iptables("host", table="nat", args=("-X", "DOCKER")),
     "iptables -t nat -X DOCKER"),
    ("host", "iptables -P FORWARD DROP", Iptables("host", table="filter", args=("-P", "FORWARD", "DROP")),
     "iptables -P FORWARD DROP"),
    ("host", "iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE",
     Iptables("host", table="nat", args=("-A", "POSTROUTING", "-s", "172.18.0.0/16", "!", "-o", "br0",
                                         "-j", "MASQUERADE")),
     "iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"),
    ("host", "iptables -t nat -A PREROUTING -d 10.0.2.15/32 -p tcp -m tcp --dport 5005 -j DNAT "
             "--to-destination 172.18.0.10:5000",
     Iptables("host", table="nat", args=("-A", "PREROUTING", "-d", "10.0.2.15/32", "-p", "tcp", "-m", "tcp",
                                         "--dport", "5005", "-j", "DNAT", "--to-destination",
                                         "172.18.0.10:5000")),
     "iptables -t nat -A PREROUTING -d 10.0.2.15/32 -p tcp -m tcp --dport 5005 -j DNAT "
     "--to-destination 172.18.0.10:5000"),
    ("host", "iptables -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
     Iptables("host", table="filter", args=("-A", "FORWARD", "-o", "br0", "-m", "conntrack", "--ctstate",
                                            "RELATED,ESTABLISHED", "-j", "ACCEPT")),
     "iptables -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ("host", "iptables -A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5005 --ctdir ORIGINAL ! -s 10.0.2.2 -j DROP",
     Iptables("host", table="filter", args=("-A", "DOCKER-USER", "-p", "tcp", "-m", "conntrack", "--ctorigdstport",
                                            "5005", "--ctdir", "ORIGINAL", "!", "-s", "10.0.2.2", "-j", "DROP")),
     "iptables -A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5005 --ctdir ORIGINAL ! -s 10.0.2.2 -j DROP"),
    ("host", "iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 5005 -j DNAT "
             "--to-destination 172.18.0.10:5000",
     Iptables("host", table="nat", args=("-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-p", "tcp",
                                         "--dport", "5005", "-j", "DNAT", "--to-destination", "172.18.0.10:5000")),
     "iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 5005 -j DNAT "
     "--to-destination 172.18.0.10:5000"),
    ("host", "iptables -A DOCKER-USER -m conntrack --ctorigdst 10.0.2.16 --ctorigsrc 10.0.2.2 -j RETURN",
     Iptables("host", table="filter", args=("-A", "DOCKER-USER", "-m", "conntrack", "--ctorigdst", "10.0.2.16",
                                            "--ctorigsrc", "10.0.2.2", "-j", "RETURN")),
     "iptables -A DOCKER-USER -m conntrack --ctorigdst 10.0.2.16 --ctorigsrc 10.0.2.2 -j RETURN"),
    ("host", "iptables -I FORWARD 2 -i br0 -j ACCEPT",
     Iptables("host", table="filter", args=("-I", "FORWARD", "2", "-i", "br0", "-j", "ACCEPT")),
     "iptables -I FORWARD 2 -i br0 -j ACCEPT"),
    ("host", "iptables -I FORWARD -j DOCKER-USER",
     Iptables("host", table="filter", args=("-I", "FORWARD", "-j", "DOCKER-USER")),
     "iptables -I FORWARD -j DOCKER-USER"),
    ("host", "iptables --append FORWARD -i br0 -j ACCEPT",
     Iptables("host", table="filter", args=("-A", "FORWARD", "-i", "br0", "-j", "ACCEPT")),
     "iptables -A FORWARD -i br0 -j ACCEPT"),
    ("host", "iptables -t nat -D OUTPUT -d 10.0.2.15/32 -p tcp --dport 5005 -j DNAT --to-destination "
             "172.18.0.10:5000",
     Iptables("host", table="nat", args=("-D", "OUTPUT", "-d", "10.0.2.15/32", "-p", "tcp", "--dport", "5005",
                                         "-j", "DNAT", "--to-destination", "172.18.0.10:5000")),
     "iptables -t nat -D OUTPUT -d 10.0.2.15/32 -p tcp --dport 5005 -j DNAT --to-destination "
     "172.18.0.10:5000"),
    ("host", "sysctl -w net.ipv4.ip_forward=1", Sysctl("host", key="net.ipv4.ip_forward", value="1"),
     "sysctl -w net.ipv4.ip_forward=1"),
    ("host", "sysctl net.ipv4.ip_forward=1", Sysctl("host", key="net.ipv4.ip_forward", value="1"),
     "sysctl -w net.ipv4.ip_forward=1"),
    ("host", "sysctl -w net/ipv4/conf/all/rp_filter=0",
     Sysctl("host", key="net.ipv4.conf.all.rp_filter", value="0"), "sysctl -w net.ipv4.conf.all.rp_filter=0"),
    ("host", "sysctl -w net.bridge.bridge-nf-call-iptables=0",
     Sysctl("host", key="net.bridge.bridge-nf-call-iptables", value="0"),
     "sysctl -w net.bridge.bridge-nf-call-iptables=0"),
    ("host", "sysctl -w net.ipv6.conf.all.forwarding=1",
     Sysctl("host", key="net.ipv6.conf.all.forwarding", value="1"), "sysctl -w net.ipv6.conf.all.forwarding=1"),
    ("netns0", "python3 -m http.server --bind 172.18.0.10 5000",
     HttpServer("netns0", address="172.18.0.10", port=5000), "python3 -m http.server --bind 172.18.0.10 5000"),
    # fuser -k: stop what listens on a port in the namespace (the lab's servers)
    ("netns0", "fuser -k 6000/tcp", StopServers("netns0", port=6000), "fuser -k 6000/tcp"),
    ("host", "fuser -k -n tcp 8080", StopServers("host", port=8080), "fuser -k 8080/tcp"),
    ("host", "ip netns exec netns0 fuser -k 6000/tcp", StopServers("netns0", port=6000), "fuser -k 6000/tcp"),
    ("upstream", "fuser -k 53/udp", StopServers("upstream", port=53, proto="udp"), "fuser -k 53/udp"),
    # dnsmasq: netstep's own DNS server, typed as dnsmasq is
    ("upstream",
     "dnsmasq --keep-in-foreground --no-resolv --listen-address=10.0.2.2 --address=/Example.com/203.0.113.8",
     DnsServer("upstream", address="10.0.2.2", answers=(("example.com", "203.0.113.8"),)),
     "dnsmasq --keep-in-foreground --no-resolv --listen-address=10.0.2.2 --address=/example.com/203.0.113.8"),
    ("netns1", "dnsmasq -k -R --listen-address=127.0.0.11 --server=10.0.2.2",
     DnsServer("netns1", address="127.0.0.11", forward="10.0.2.2"),
     "dnsmasq --keep-in-foreground --no-resolv --listen-address=127.0.0.11 --server=10.0.2.2"),
    # a namespace's own resolv.conf, in the lab's /etc
    ("host", "mkdir -p /etc/netns/netns0", EtcFile("host", netns="netns0", op="mkdir"), "mkdir -p /etc/netns/netns0"),
    ("host", "cp /etc/resolv.conf /etc/netns/netns0/resolv.conf", EtcFile("host", netns="netns0", op="copy"),
     "cp /etc/resolv.conf /etc/netns/netns0/resolv.conf"),
    ("host", "echo 'nameserver 10.0.2.2' > /etc/netns/netns0/resolv.conf",
     EtcFile("host", netns="netns0", op="write", content="nameserver 10.0.2.2\n"),
     "echo 'nameserver 10.0.2.2' > /etc/netns/netns0/resolv.conf"),
    ("host", "echo nameserver 10.0.2.2 >/etc/netns/netns0/resolv.conf",
     EtcFile("host", netns="netns0", op="write", content="nameserver 10.0.2.2\n"),
     "echo 'nameserver 10.0.2.2' > /etc/netns/netns0/resolv.conf"),
    ("host", "rm -r /etc/netns/netns0", EtcFile("host", netns="netns0", op="rmdir"), "rm -r /etc/netns/netns0"),
    # ip netns exec: the inner command runs in the named namespace, whatever the prompt.
    ("host", "ip netns exec netns0 ip link set lo up", SetLinkUp("netns0", name="lo", up=True),
     "ip link set lo up"),
    ("host", "sudo ip netns exec netns1 sudo ip addr add 172.18.0.20/16 dev ceth1",
     Address("netns1", dev="ceth1", cidr="172.18.0.20/16"), "ip addr add 172.18.0.20/16 dev ceth1"),
    ("host", "ip netns exec netns0 python3 -m http.server --bind 172.18.0.10 5000",
     HttpServer("netns0", address="172.18.0.10", port=5000), "python3 -m http.server --bind 172.18.0.10 5000"),
    # nsenter into the file `ip netns add` made: the same namespace as `ip netns exec` reaches.
    ("host", "nsenter --net=/var/run/netns/netns0 ip link set lo up", SetLinkUp("netns0", name="lo", up=True),
     "ip link set lo up"),
    ("host", "sudo nsenter --net /run/netns/netns1 -- iptables -N MINE", Iptables("netns1", args=("-N", "MINE")),
     "iptables -N MINE"),
]


@pytest.mark.parametrize(("where", "line", "expected", "text"), ACCEPTED, ids=[a[1] for a in ACCEPTED])
def test_accepted_command_parses_to_action(where: str, line: str, expected: Action, text: str) -> None:
    action = parse(line, where)
    assert action == expected
    assert type(action) is type(expected)
    assert action.command() == text


@pytest.mark.parametrize(("where", "line", "expected", "text"), ACCEPTED, ids=[a[1] for a in ACCEPTED])
def test_command_text_parses_back_to_the_same_action(where: str, line: str, expected: Action, text: str) -> None:
    """What command() prints is itself a valid command for the same action (the CLI shows it)."""
    action = parse(line, where)
    assert parse(action.command(), action.ns) == action


@pytest.mark.parametrize(("where", "line", "expected", "text"), ACCEPTED, ids=[a[1] for a in ACCEPTED])
def test_action_survives_the_journal(where: str, line: str, expected: Action, text: str) -> None:
    """Actions go through journal.json as dicts and must come back equal."""
    import json

    action = parse(line, where)
    assert Action.from_dict(json.loads(json.dumps(action.to_dict()))) == action


def test_comment_with_spaces_is_quoted_in_command_text() -> None:
    action = parse("iptables -A FORWARD -i br0 -m comment --comment 'netstep demo' -j ACCEPT")
    assert action.args[-3] == "netstep demo"
    assert action.command() == "iptables -A FORWARD -i br0 -m comment --comment 'netstep demo' -j ACCEPT"
    assert parse(action.command()) == action


def test_where_is_kept() -> None:
    assert parse("ip link set lo up", "netns3").ns == "netns3"
    assert parse("iptables -N X", "upstream").ns == "upstream"


# (typed command, words the error message must contain)
REJECTED = [
    # tools outside the grammar
    ("ping 8.8.8.8", ["unknown command", "ping"]),
    ("bash", ["unknown command", "bash"]),
    ("rm -rf /run/netstep", ["rm -r /etc/netns/NAME"]),
    ("nsenter --net=/proc/1/ns/net ip link set lo up", ["not a namespace `ip netns add` made"]),
    ("nsenter --net=/var/run/netns/netns0", ["nsenter --net=/var/run/netns/NAME COMMAND", "netstep shell"]),
    ("nsenter --net=/var/run/netns/netns0 bash", ["unknown command", "bash"]),
    ("nsenter -t 1 -n ip link set lo up", ["nsenter --net=/var/run/netns/NAME COMMAND"]),
    ("nsenter --net=/var/run/netns/host ip link set lo up", ["cannot name a container namespace"]),
    ("ip netns exec netns0 bash", ["unknown command", "bash"]),
    ("ip netns exec netns0 curl 10.0.2.15", ["unknown command", "curl"]),
    ("python3 -c print", ["python3 -m http.server"]),
    ("python3 -m http.server 8000", ["python3 -m http.server --bind"]),
    ("ip monitor", ["not supported"]),
    ("ip neigh flush all", ["not supported"]),
    ("ip link show", ["not supported"]),
    ("ip netns list", ["not supported"]),
    # shell metacharacters: never a shell
    ("ip link set veth0 up; rm -rf /", ["no shell", "';'"]),
    ("ip link | grep veth0", ["no shell", "'|'"]),
    ("ip addr add $(hostname)/16 dev veth0", ["no shell", "'$'"]),
    ("ip link set `whoami` up", ["no shell", "'`'"]),
    ("iptables-save > /etc/iptables", ["no shell", "'>'"]),
    ("ip link add veth0 type bridge && reboot", ["no shell", "'&'"]),
    ("sysctl -w net.ipv4.ip_forward=1 < /dev/null", ["no shell", "'<'"]),
    ("ip link set lo up\nreboot", ["no shell"]),
    # sysctls outside the network namespace's own keys
    ("sysctl -w kernel.panic=1", ["kernel.panic", "not a network sysctl"]),
    ("sysctl -w net.core.somaxconn=1", ["net.core.somaxconn", "not a network sysctl"]),
    ("sysctl -w vm.overcommit_memory=1", ["not a network sysctl"]),
    ("sysctl -w net.ipv4..ip_forward=1", ["not a network sysctl"]),
    ("sysctl -w net.ipv4.ip_forward", ["sysctl -w KEY=VALUE"]),
    ("sysctl -a", ["sysctl -w KEY=VALUE"]),
    # addresses
    ("ip addr add 172.18.0.300/16 dev veth0", ["172.18.0.300/16", "not an IPv4 address"]),
    ("ip addr add 172.18.0.10 dev veth0", ["172.18.0.10", "prefix length"]),
    ("ip addr add fe80::1/64 dev veth0", ["fe80::1/64"]),
    ("ip addr add 172.18.0.10/33 dev veth0", ["172.18.0.10/33"]),
    ("ip addr add 172.18.0.10/16 veth0", ["ip addr add|del"]),
    ("ip route add 172.18.0.1/16 dev veth0", ["172.18.0.1/16", "not a destination"]),
    ("ip route add default via 172.18.0", ["172.18.0", "not an IPv4 address"]),
    ("ip route add 10.0.0.0/8", ["via GATEWAY", "dev NAME"]),
    ("ip route add default via 172.18.0.1 metric 5", ["unexpected 'metric'"]),
    ("ip route delete 172.18.0.0/16 proto bogus", ["unknown route proto"]),
    ("fuser 6000/tcp", ["fuser -k PORT/tcp"]),
    ("dnsmasq --no-resolv", ["--listen-address=ADDRESS"]),
    ("dnsmasq --listen-address=10.0.2.2", ["--no-resolv"]),
    ("dnsmasq --no-resolv --listen-address=10.0.2.2 --conf-file=/etc/x", ["'--conf-file=/etc/x'", "not in netstep"]),
    ("dnsmasq --no-resolv --listen-address=10.0.2.300", ["'10.0.2.300' is not an IPv4 address"]),
    ("echo 'nameserver 10.0.2.2' > /etc/resolv.conf", ["no shell"]),
    ("echo 'nameserver x' > /etc/netns/netns0/resolv.conf", ["'x' is not an IPv4 address"]),
    ("echo 'nameserver 10.0.2.2' > /etc/netns/host/resolv.conf", ["cannot name a container namespace"]),
    ("cp /etc/passwd /etc/netns/netns0/resolv.conf", ["mkdir -p /etc/netns/NAME"]),
    ("rm -rf /etc", ["mkdir -p /etc/netns/NAME"]),
    ("rm -r /etc/netns/../shadow", ["rm -r /etc/netns/NAME"]),
    ("rm -r /etc/netns/..", ["'..' cannot name a container namespace"]),
    ("mkdir /etc/netns/netns0", ["mkdir -p /etc/netns/NAME"]),
    ("fuser -k 6000/sctp", ["fuser -k PORT/tcp"]),
    ("fuser -k 70000/tcp", ["70000", "not a port number"]),
    ("fuser -k -n tcp", ["fuser -k PORT/tcp"]),
    ("python3 -m http.server --bind 172.18.0.999 5000", ["172.18.0.999", "not an IPv4 address"]),
    ("python3 -m http.server --bind 172.18.0.10 70000", ["70000", "not a port"]),
    # names
    ("ip link add averyveryverylongname type bridge", ["averyveryverylongname", "not a valid device name"]),
    ("ip netns add host", ["'host' cannot name a container namespace"]),
    ("ip netns add upstream", ["'upstream' cannot name a container namespace"]),
    ("ip link add veth0 type vxlan", ["ip link add NAME type veth peer name PEER"]),
    ("ip link set veth0 mtu 20", ["from 68 to 65535"]),
    ("bridge link set dev veth0 hairpin maybe", ["hairpin on|off"]),
    ("ip link set br1 type bridge nf_call_iptables on", ["nf_call_iptables 0|1"]),
    ("ip link set br1 type bridge nf_call_iptables", ["nf_call_iptables 0|1"]),
    ("bridge fdb add 02:00:00:00:00:01 dev veth0", ["bridge link set dev NAME hairpin on|off"]),
    ("iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN", ["needs 2 values"]),
    # iptables
    ("iptables -A FORWARD --foo bar -j ACCEPT", ["'--foo'", "not in netstep's grammar"]),
    ("iptables -A FORWARD -s 10.0.0.0/8 --set-xmark 1 -j ACCEPT", ["'--set-xmark'"]),
    ("iptables -A FORWARD -s", ["'-s'", "needs a value"]),
    ("iptables -t broken -A FORWARD -j ACCEPT", ["unknown iptables table 'broken'"]),
    ("iptables -L", ["-L", "not supported"]),
    ("iptables -F FORWARD", ["-F", "not supported"]),
    ("iptables -P FORWARD REJECT", ["ACCEPT or DROP", "REJECT"]),
    ("iptables -N 1chain", ["'1chain'", "not a valid chain name"]),
    ("iptables -A", ["needs a chain"]),
    ("iptables -A FORWARD", ["rule is empty"]),
    ("iptables -A FORWARD -s 10.0.0.0/8", ["needs a target", "-j"]),
    ("iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0", ["needs a target"]),
    ("iptables", ["iptables needs a command"]),
    # namespaces are made on the host
    ("ip netns exec netns0", ["ip netns exec NAME COMMAND"]),
    ("", ["empty command"]),
    ("sudo", ["empty command"]),
]


@pytest.mark.parametrize(("line", "words"), REJECTED, ids=[r[0] or "<empty>" for r in REJECTED])
def test_rejected_command_says_why(line: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse(line, "host")
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in the error {message!r}"


def test_namespaces_are_added_from_the_host_only() -> None:
    with pytest.raises(ValueError, match="from the host"):
        parse("ip netns add netns1", "netns0")
    with pytest.raises(ValueError, match="from the host"):
        parse("ip netns delete netns1", "netns0")


def test_parse_never_runs_anything(tmp_path) -> None:
    """A rejected command has no side effect: the grammar only describes."""
    target = tmp_path / "touched"
    for line in (f"touch {target}", f"ip link set lo up; touch {target}", f"ip link set $(touch {target}) up"):
        with pytest.raises(ValueError):
            parse(line, "host")
    assert not target.exists()


@pytest.mark.parametrize("line", [
    "ip link add veth0 type veth peer name ceth0", "  ip\taddr  add 10.0.0.1/24 dev veth0 ",
    "ip a\xa0b", "iptables -A FORWARD -m comment --comment 'two words' -j ACCEPT", 'iptables -t "" nat',
    "echo a#b", 'ip link set "veth0" up',
])
def test_words_are_split_as_a_posix_shell_splits_them(line):
    import shlex

    assert split(line) == shlex.split(line)


@pytest.mark.parametrize("line", ['iptables -t "" nat -A POSTROUTING -j MASQUERADE',
                                  "sysctl -w '' net.ipv4.ip_forward=1"])
def test_an_empty_quoted_word_stays_a_word_and_is_refused(line):
    with pytest.raises(ValueError):
        parse(line)


@pytest.mark.parametrize("line, command", [
    ("ip link set eth0 mtu 1400", "ip link set eth0 mtu 1400"),
    ("ip link set dev eth0 mtu 1500", "ip link set eth0 mtu 1500"),
    ("bridge link set dev veth0 hairpin on", "bridge link set dev veth0 hairpin on"),
    ("bridge link set veth0 hairpin off", "bridge link set dev veth0 hairpin off"),
    ("ip link set dev br1 type bridge nf_call_iptables 1", "ip link set br1 type bridge nf_call_iptables 1"),
    ("ip link set br1 type bridge nf_call_iptables 0", "ip link set br1 type bridge nf_call_iptables 0"),
    ("iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
     "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"),
    ("iptables -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP",
     "iptables -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP"),
    ("iptables -t nat -A POSTROUTING -o br0 -m addrtype --src-type LOCAL -j MASQUERADE",
     "iptables -t nat -A POSTROUTING -o br0 -m addrtype --src-type LOCAL -j MASQUERADE"),
])
def test_lessons_9_and_11_commands_parse_and_say_themselves(line: str, command: str) -> None:
    assert parse(line).command() == command
