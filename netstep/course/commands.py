"""The command grammar: the subset of ip, iptables, sysctl, fuser, dnsmasq and of the file
commands on /etc/netns/NAME/resolv.conf that the course uses.

`parse(line, where)` turns what a student types into an Action, or raises ValueError with
a sentence saying what is wrong. Nothing here runs anything: a lesson file can only ever
describe actions from this grammar, so loading one can never become a root shell.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    BridgeFilter,
    DeleteLink,
    DeleteNetns,
    DnsServer,
    EtcFile,
    Hairpin,
    HttpServer,
    Iptables,
    MoveLink,
    Route,
    SetLinkUp,
    SetMaster,
    SetMtu,
    StopServers,
    Sysctl,
)
from netstep.i18n import _, ngettext

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ - 1
NS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
SYSCTL_KEY = re.compile(r"^net\.(ipv4|ipv6|bridge)\.[A-Za-z0-9_.-]+$")
IPT_VALUE = re.compile(r"^[A-Za-z0-9_.:/,!+-]+$")
SHELL_CHARS = set(";|&$`<>\\\n(){}*?")

TABLES = {"filter", "nat", "mangle", "raw"}
POLICIES = {"ACCEPT", "DROP"}
# iptables rule options the grammar accepts, and whether each takes a value.
RULE_OPTIONS = {
    "-s": True, "--source": True, "-d": True, "--destination": True,
    "-i": True, "--in-interface": True, "-o": True, "--out-interface": True,
    "-p": True, "--protocol": True, "-m": True, "--match": True,
    "--dport": True, "--sport": True, "-j": True, "--jump": True,
    "--to-destination": True, "--to-source": True, "--ctstate": True, "--state": True,
    "--dst-type": True, "--src-type": True, "--comment": True, "--to-ports": True,
    "--tcp-flags": True, "--clamp-mss-to-pmtu": False, "--set-mss": True, "--icmp-type": True,
}
# conntrack's view of a connection (lesson 8): the original destination port, before DNAT
# rewrote it, and which direction of the connection a packet travels.
RULE_OPTIONS.update({"--ctorigdstport": True, "--ctorigsrc": True, "--ctorigdst": True, "--ctdir": True})
# Options whose number of values is not one (RULE_OPTIONS says whether they take any):
# `--tcp-flags MASK COMPARED` (`SYN,RST SYN`: the flags looked at, then those that must be set).
RULE_OPTION_VALUES = {"--tcp-flags": 2}


def split(line: str) -> list[str]:
    bad = sorted({c for c in line if c in SHELL_CHARS})
    if bad:
        raise ValueError(_("netstep runs no shell: {chars} cannot appear in a command")
                         .format(chars=" ".join(repr(c) for c in bad)))
    if any(ord(c) < 32 and c != "\t" for c in line):
        raise ValueError(_("the command holds control characters"))
    try:  # shlex is slow, and only quotes, escapes and comments need it
        if any(c in line for c in "'\"\\#"):
            words = shlex.split(line)
        else:
            words = [w for w in line.replace("\t", " ").split(" ") if w]
    except ValueError as exc:
        raise ValueError(_("cannot split the command into words ({error})").format(error=exc)) from None
    if words and words[0] == "sudo":
        words = words[1:]
    if not words:
        raise ValueError(_("empty command"))
    return words


# `echo 'nameserver ADDR' > /etc/netns/NAME/resolv.conf`: the one redirection the grammar
# takes, since a namespace's resolv.conf is written that way (no shell runs it either).
ECHO_RESOLV = re.compile(r"""^(?:sudo\s+)?echo\s+(['"]?)nameserver\s+(\S+?)\1\s*>\s*"""
                         r"""/etc/netns/([^/\s]+)/resolv\.conf\s*$""")


def parse(line: str, where: str = "host") -> Action:
    """Parse one command typed in namespace `where` into an Action."""
    echo = ECHO_RESOLV.match(line.strip())
    if echo:
        try:
            server = str(ipaddress.IPv4Address(echo.group(2)))
        except ValueError:
            raise ValueError(_("'{word}' is not an IPv4 address for a nameserver").format(word=echo.group(2))) from None
        return EtcFile(where, netns=_ns_name(echo.group(3)), op="write", content=f"nameserver {server}\n")
    return parse_words(split(line), where)


def parse_words(words: list[str], where: str) -> Action:
    tool = words[0]
    if tool == "ip":
        return _ip(words[1:], where)
    if tool in ("iptables", "iptables-nft"):
        return _iptables(words[1:], where)
    if tool == "sysctl":
        return _sysctl(words[1:], where)
    if tool in ("python3", "python"):
        return _http_server(words[1:], where)
    if tool == "nsenter":
        return _nsenter(words[1:])
    if tool == "bridge":
        return _bridge(words[1:], where)
    if tool == "fuser":
        return _fuser(words[1:], where)
    if tool == "dnsmasq":
        return _dnsmasq(words[1:], where)
    if tool in ("mkdir", "cp", "rm"):
        return _etc_netns(words, where)
    raise ValueError(_("unknown command '{tool}': lessons can use ip, bridge, iptables, sysctl, python3 -m "
                       "http.server, dnsmasq, fuser -k PORT/tcp|udp, and mkdir, cp, echo and rm on "
                       "/etc/netns/NAME/resolv.conf").format(tool=tool))


def _name(word: str) -> str:
    if not NAME.match(word):
        raise ValueError(_("'{word}' is not a valid device name").format(word=word))
    return word


def _ns_name(word: str) -> str:
    if not NS_NAME.match(word) or word in ("host", "upstream"):
        raise ValueError(_("'{word}' cannot name a container namespace").format(word=word))
    return word


def _expect(words: list[str], count: int, usage: str) -> None:
    if len(words) != count:
        raise ValueError(_("expected: {usage}").format(usage=usage))


def _ip(words: list[str], where: str) -> Action:
    if not words:
        raise ValueError(_("'ip' needs an object: netns, link, addr or route"))
    obj, rest = words[0], words[1:]
    if obj == "netns":
        return _ip_netns(rest, where)
    if obj == "link":
        return _ip_link(rest, where)
    if obj in ("addr", "address", "a"):
        return _ip_addr(rest, where)
    if obj in ("route", "r", "ro"):
        return _ip_route(rest, where)
    raise ValueError(_("'ip {object}' is not supported: use ip netns, ip link, ip addr or ip route").format(object=obj))


def _ip_netns(words: list[str], where: str) -> Action:
    if not words:
        raise ValueError(_("'ip netns' needs add, delete or exec"))
    verb = words[0]
    if verb == "exec":
        if len(words) < 3:
            raise ValueError(_("expected: {usage}").format(usage="ip netns exec NAME COMMAND"))
        inner = words[2:]
        if inner[0] == "sudo":
            inner = inner[1:]
        return parse_words(inner, _ns_name(words[1]))
    if where != "host":
        raise ValueError(_("namespaces are added and deleted from the host"))
    if verb == "add":
        _expect(words, 2, "ip netns add NAME")
        return AddNetns("host", name=_ns_name(words[1]))
    if verb in ("del", "delete"):
        _expect(words, 2, "ip netns delete NAME")
        return DeleteNetns("host", name=_ns_name(words[1]))
    raise ValueError(_("'ip netns {verb}' is not supported: use add, delete or exec").format(verb=verb))


def _nsenter(words: list[str]) -> Action:
    """`nsenter --net=/var/run/netns/NAME COMMAND`, the article's way into a namespace: the
    file `ip netns add` made, so it reaches the same network namespace as `ip netns exec`."""
    usage = _("expected: {usage}").format(usage="nsenter --net=/var/run/netns/NAME COMMAND")
    if len(words) >= 2 and words[0] in ("--net", "-n"):
        words = [f"--net={words[1]}", *words[2:]]
    if not words or not words[0].startswith("--net="):
        raise ValueError(usage)
    path, inner = words[0].removeprefix("--net="), words[1:]
    folder, _slash, name = path.rstrip("/").rpartition("/")
    if folder not in ("/var/run/netns", "/run/netns"):
        raise ValueError(_("'{path}' is not a namespace `ip netns add` made: {usage}").format(path=path, usage=usage))
    if inner[:1] == ["--"]:
        inner = inner[1:]
    if inner[:1] == ["sudo"]:
        inner = inner[1:]
    if not inner:
        raise ValueError(_("{usage} (a shell opened by nsenter is yours to type in: `netstep shell` runs it)")
                         .format(usage=usage))
    return parse_words(inner, _ns_name(name))


def _ip_link(words: list[str], where: str) -> Action:
    if not words:
        raise ValueError(_("'ip link' needs add, set or delete"))
    verb, rest = words[0], words[1:]
    if rest and rest[0] == "dev":
        rest = rest[1:]
    if verb == "add":
        if len(rest) == 3 and rest[1] == "type" and rest[2] == "bridge":
            return AddLink(where, name=_name(rest[0]), kind="bridge")
        if len(rest) == 6 and rest[1:3] == ["type", "veth"] and rest[3:5] == ["peer", "name"]:
            return AddLink(where, name=_name(rest[0]), kind="veth", peer=_name(rest[5]))
        if len(rest) == 8 and rest[1:3] == ["type", "veth"] and rest[3:5] == ["peer", "name"] and rest[6] == "netns":
            return AddLink(where, name=_name(rest[0]), kind="veth", peer=_name(rest[5]), peer_ns=_target_ns(rest[7]))
        raise ValueError(_("expected: {usage}, or {other}").format(
            usage="ip link add NAME type veth peer name PEER [netns NS]", other="ip link add NAME type bridge"))
    if verb in ("del", "delete"):
        _expect(rest, 1, "ip link delete NAME")
        return DeleteLink(where, name=_name(rest[0]))
    if verb == "set":
        if len(rest) == 2 and rest[1] in ("up", "down"):
            return SetLinkUp(where, name=_name(rest[0]), up=rest[1] == "up")
        if len(rest) == 3 and rest[1] == "netns":
            return MoveLink(where, name=_name(rest[0]), to=_target_ns(rest[2]))
        if len(rest) == 3 and rest[1] == "master":
            return SetMaster(where, name=_name(rest[0]), master=_name(rest[2]))
        if len(rest) == 2 and rest[1] == "nomaster":
            return SetMaster(where, name=_name(rest[0]), master="")
        if len(rest) == 3 and rest[1] == "mtu":
            return SetMtu(where, name=_name(rest[0]), mtu=_mtu(rest[2]))
        if len(rest) == 5 and rest[1:4] == ["type", "bridge", "nf_call_iptables"] and rest[4] in ("0", "1"):
            return BridgeFilter(where, name=_name(rest[0]), on=rest[4] == "1")
        raise ValueError(_("expected: {usage}, or {other}").format(
            usage="ip link set NAME up|down|netns NS|master BRIDGE|nomaster|mtu N",
            other="ip link set BRIDGE type bridge nf_call_iptables 0|1"))
    raise ValueError(_("'ip link {verb}' is not supported: use add, set or delete").format(verb=verb))


def _mtu(word: str) -> int:
    if not word.isdigit() or not 68 <= int(word) <= 65535:
        raise ValueError(_("'{word}' is not an MTU netstep sets: a number of bytes from 68 to 65535 (below 68 a "
                           "link carries no IPv4 at all)").format(word=word))
    return int(word)


def _bridge(words: list[str], where: str) -> Action:
    """`bridge link set dev NAME hairpin on|off`, iproute2's tool for a bridge's ports."""
    usage = _("expected: {usage}").format(usage="bridge link set dev NAME hairpin on|off")
    if words[:2] != ["link", "set"]:
        raise ValueError(_("'bridge {words}' is not supported: {usage}").format(words=" ".join(words[:2]), usage=usage))
    rest = words[2:]
    if rest[:1] == ["dev"]:
        rest = rest[1:]
    if len(rest) != 3 or rest[1] != "hairpin" or rest[2] not in ("on", "off"):
        raise ValueError(usage)
    return Hairpin(where, name=_name(rest[0]), on=rest[2] == "on")


def _target_ns(word: str) -> str:
    if word in ("host", "upstream"):
        return word
    return _ns_name(word)


def _cidr(word: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(word)
    except ValueError:
        raise ValueError(_("'{word}' is not an IPv4 address with a prefix length, such as {example}")
                         .format(word=word, example="172.18.0.10/16")) from None
    if "/" not in word:
        raise ValueError(_("'{word}' needs a prefix length, such as {example}").format(word=word, example=f"{word}/16"))
    return str(iface)


def _ip_addr(words: list[str], where: str) -> Action:
    if len(words) != 4 or words[0] not in ("add", "del", "delete") or words[2] != "dev":
        raise ValueError(_("expected: {usage}").format(usage="ip addr add|del ADDRESS/LEN dev NAME"))
    return Address(where, dev=_name(words[3]), cidr=_cidr(words[1]), add=words[0] == "add")


def _ip_route(words: list[str], where: str) -> Action:
    if len(words) < 2 or words[0] not in ("add", "del", "delete"):
        raise ValueError(_("expected: {usage}").format(usage="ip route add|delete DEST [via GATEWAY] [dev NAME]"))
    add = words[0] == "add"
    dst = words[1]
    if dst != "default":
        try:
            dst = str(ipaddress.IPv4Network(dst, strict=True))
        except ValueError:
            raise ValueError(_("'{word}' is not a destination: use default or a prefix such as {example}")
                             .format(word=dst, example="172.18.0.0/16")) from None
    opts: dict[str, str] = {}
    rest = words[2:]
    allowed = ("via", "dev") if add else ("via", "dev", "proto", "scope", "src")
    while rest:
        if len(rest) < 2 or rest[0] not in allowed or rest[0] in opts:
            raise ValueError(_("unexpected '{word}' in the route: it may have {options}")
                             .format(word=rest[0], options=", ".join(allowed)))
        opts[rest[0]] = rest[1]
        rest = rest[2:]
    for key in ("via", "src"):
        if key in opts:
            try:
                ipaddress.IPv4Address(opts[key])
            except ValueError:
                raise ValueError(_("'{word}' is not an IPv4 address").format(word=opts[key])) from None
    if "dev" in opts:
        _name(opts["dev"])
    if add and not ("via" in opts or "dev" in opts):
        raise ValueError(_("a route needs 'via GATEWAY' or 'dev NAME'"))
    if opts.get("proto", "kernel") not in ("kernel", "boot", "static"):
        raise ValueError(_("unknown route proto '{proto}'").format(proto=opts["proto"]))
    if opts.get("scope", "link") not in ("link", "global", "host"):
        raise ValueError(_("unknown route scope '{scope}'").format(scope=opts["scope"]))
    return Route(where, dst=dst, add=add, **opts)


def _iptables(words: list[str], where: str) -> Action:
    table = "filter"
    if len(words) >= 2 and words[0] in ("-t", "--table"):
        table, words = words[1], words[2:]
        if table not in TABLES:
            raise ValueError(_("unknown iptables table '{table}': use filter, nat, mangle or raw").format(table=table))
    if not words:
        raise ValueError(_("iptables needs a command: -N, -X, -A, -I, -D or -P"))
    op, rest = words[0], words[1:]
    if op in ("-N", "--new-chain", "-X", "--delete-chain"):
        _expect(rest, 1, f"iptables {op} CHAIN")
        return Iptables(where, table=table, args=(_short(op), _chain(rest[0])))
    if op in ("-P", "--policy"):
        _expect(rest, 2, "iptables -P CHAIN ACCEPT|DROP")
        if rest[1] not in POLICIES:
            raise ValueError(_("a policy is ACCEPT or DROP, not '{word}'").format(word=rest[1]))
        return Iptables(where, table=table, args=("-P", _chain(rest[0]), rest[1]))
    if op in ("-A", "--append", "-D", "--delete", "-I", "--insert"):
        short = _short(op)
        if not rest:
            raise ValueError(_("iptables {op} needs a chain").format(op=op))
        chain, rule = _chain(rest[0]), rest[1:]
        position: tuple[str, ...] = ()
        if short == "-I" and rule and rule[0].isdigit():
            position, rule = (rule[0],), rule[1:]
        _check_rule(rule)
        return Iptables(where, table=table, args=(short, chain, *position, *rule))
    raise ValueError(_("iptables {op} is not supported: use -N, -X, -A, -I, -D or -P (and inspect to list rules)")
                     .format(op=op))


def _short(op: str) -> str:
    return {"--new-chain": "-N", "--delete-chain": "-X", "--append": "-A", "--delete": "-D",
            "--insert": "-I", "--policy": "-P"}.get(op, op)


def _chain(word: str) -> str:
    if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,28}$", word):
        raise ValueError(_("'{word}' is not a valid chain name").format(word=word))
    return word


def _check_rule(rule: list[str]) -> None:
    if not rule:
        raise ValueError(_("the rule is empty: say what to match and -j TARGET"))
    i = 0
    while i < len(rule):
        word = rule[i]
        if word == "!":
            i += 1
            continue
        if word not in RULE_OPTIONS:
            raise ValueError(_("iptables option '{word}' is not in netstep's grammar").format(word=word))
        count = RULE_OPTION_VALUES.get(word, 1) if RULE_OPTIONS[word] else 0
        if i + count >= len(rule):
            raise ValueError(ngettext("iptables option '{word}' needs a value",
                                      "iptables option '{word}' needs {count} values", count)
                             .format(word=word, count=count))
        for value in rule[i + 1 : i + 1 + count]:
            if not IPT_VALUE.match(value) and not (word == "--comment" and re.match(r"^[\w .:-]+$", value)):
                raise ValueError(_("'{value}' is not a valid value for {option}").format(value=value, option=word))
        i += 1 + count
    if "-j" not in rule and "--jump" not in rule:
        raise ValueError(_("the rule needs a target: -j ACCEPT, DROP, MASQUERADE, DNAT, RETURN or a chain"))


def _sysctl(words: list[str], where: str) -> Action:
    if words and words[0] == "-w":
        words = words[1:]
    if len(words) != 1 or "=" not in words[0]:
        raise ValueError(_("expected: {usage}").format(usage="sysctl -w KEY=VALUE"))
    key, value = words[0].split("=", 1)
    key = key.replace("/", ".")
    if not SYSCTL_KEY.match(key) or ".." in key:
        raise ValueError(_("'{key}' is not a network sysctl: netstep only changes keys under net.ipv4, net.ipv6 "
                           "and net.bridge, which belong to one namespace").format(key=key))
    if not re.match(r"^[0-9A-Za-z_ .-]{1,64}$", value):
        raise ValueError(_("'{value}' is not a plain sysctl value").format(value=value))
    return Sysctl(where, key=key, value=value)


def _http_server(words: list[str], where: str) -> Action:
    if len(words) != 5 or words[:2] != ["-m", "http.server"] or words[2] != "--bind":
        raise ValueError(_("the only Python command is: {usage}")
                         .format(usage="python3 -m http.server --bind ADDRESS PORT"))
    try:
        address = str(ipaddress.IPv4Address(words[3]))
    except ValueError:
        raise ValueError(_("'{word}' is not an IPv4 address").format(word=words[3])) from None
    if not words[4].isdigit() or not 0 < int(words[4]) < 65536:
        raise ValueError(_("'{word}' is not a port number").format(word=words[4]))
    return HttpServer(where, address=address, port=int(words[4]))


def _fuser(words: list[str], where: str) -> Action:
    """`fuser -k PORT/tcp` (or `fuser -k -n tcp PORT`), `/udp` for DNS: stop what listens
    on the port in this namespace, as a container is stopped. Only the lab's own servers
    are stopped."""
    usage = _("expected: {usage} or {other} (stops the lab's servers on PORT in the namespace)").format(
        usage="fuser -k PORT/tcp", other="PORT/udp")
    if words[:2] == ["-k", "-n"] and len(words) == 4 and words[2] in ("tcp", "udp"):
        proto, port = words[2], words[3]
    elif len(words) == 2 and words[0] == "-k" and words[1].endswith(("/tcp", "/udp")):
        port, _slash, proto = words[1].rpartition("/")
    else:
        raise ValueError(usage)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(_("'{word}' is not a port number: {usage}").format(word=port, usage=usage))
    return StopServers(where, port=int(port), proto=proto)


DNSMASQ_FLAGS = {"-k", "--keep-in-foreground", "-d", "--no-daemon", "-R", "--no-resolv", "-h", "--no-hosts",
                 "-z", "--bind-interfaces"}


def _dnsmasq(words: list[str], where: str) -> Action:
    """`dnsmasq --keep-in-foreground --no-resolv --listen-address=ADDR [--address=/NAME/IP ...]
    [--server=ADDR]`: netstep's own small DNS server on ADDR port 53, answering NAME itself
    and asking the server for the rest (with neither, every name is unknown)."""
    usage = _("expected: {usage}").format(usage="dnsmasq --keep-in-foreground --no-resolv --listen-address=ADDRESS "
                                                "[--address=/NAME/IP ...] [--server=ADDRESS]")
    address, forward, answers = "", "", []
    for word in words:
        flag, _equals, value = word.partition("=")
        if word in DNSMASQ_FLAGS:
            continue
        if flag in ("--listen-address", "-a") and value and not address:
            address = _ipv4(value)
        elif flag in ("--server", "-S") and value and not forward:
            forward = _ipv4(value)
        elif flag in ("--address", "-A") and re.match(r"^/[A-Za-z0-9.-]+/[0-9.]+$", value):
            _empty, name, ip = value.split("/")
            answers.append((name.lower().rstrip("."), _ipv4(ip)))
        else:
            raise ValueError(_("dnsmasq option '{word}' is not in netstep's grammar: {usage}")
                             .format(word=word, usage=usage))
    if not address:
        raise ValueError(_("dnsmasq needs --listen-address=ADDRESS: {usage}").format(usage=usage))
    if "--no-resolv" not in words and "-R" not in words:
        raise ValueError(_("dnsmasq without --no-resolv would read /etc/resolv.conf for its servers: {usage}")
                         .format(usage=usage))
    return DnsServer(where, address=address, answers=tuple(answers), forward=forward)


def _ipv4(word: str) -> str:
    try:
        return str(ipaddress.IPv4Address(word))
    except ValueError:
        raise ValueError(_("'{word}' is not an IPv4 address").format(word=word)) from None


def _etc_netns(words: list[str], where: str) -> Action:
    """mkdir -p /etc/netns/NAME, cp /etc/resolv.conf /etc/netns/NAME/resolv.conf, rm -r
    /etc/netns/NAME: a namespace's own resolv.conf, kept in the lab's /etc (never the
    machine's). Typed from the host: /etc is the host's whatever the network namespace."""
    usage = _("expected: {mkdir}, {cp}, {echo} or {rm}").format(
        mkdir="mkdir -p /etc/netns/NAME", cp="cp /etc/resolv.conf /etc/netns/NAME/resolv.conf",
        echo="echo 'nameserver ADDRESS' > /etc/netns/NAME/resolv.conf", rm="rm -r /etc/netns/NAME")
    folder = re.compile(r"^/etc/netns/([^/]+)/?$")
    conf = re.compile(r"^/etc/netns/([^/]+)/resolv\.conf$")
    if words[0] == "mkdir" and len(words) == 3 and words[1] == "-p" and folder.match(words[2]):
        return EtcFile(where, netns=_ns_name(folder.match(words[2]).group(1)), op="mkdir")
    if words[0] == "cp" and len(words) == 3 and words[1] == "/etc/resolv.conf" and conf.match(words[2]):
        return EtcFile(where, netns=_ns_name(conf.match(words[2]).group(1)), op="copy")
    if words[0] == "rm" and len(words) == 3 and words[1] in ("-r", "-rf") and folder.match(words[2]):
        return EtcFile(where, netns=_ns_name(folder.match(words[2]).group(1)), op="rmdir")
    raise ValueError(usage)
