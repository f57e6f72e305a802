"""Essentials: what a target must have, compared by meaning, not by the letter.

A student who types `ip route add 172.18.0.10 dev veth0` made the route the course asks
for, although iproute2 writes it `172.18.0.10 dev veth0 scope link proto boot` and the
course may have made it another way. So grading compares facts in a normal form: a
route by its destination (a bare address is a /32), gateway and device; an address by
its device and prefix; a device by its kind, pairing, master and up state; a rule by
the options it must carry, any of several targets allowed (`-j DROP|REJECT`); a sysctl
by its value. A lesson writes essentials in a `grade` block; a step without one is
graded on what its own commands change, in the same normal form.

Grade lines read `NAMESPACE has WHAT ...` or `NAMESPACE lacks WHAT ...`:

    host has route 172.18.0.10/32 dev veth0
    netns0 has address 172.18.0.10/16 on ceth0
    netns0 has device ceth0 up
    host has device veth0 master br0
    host has device eth0 mtu 1400            (and `hairpin on|off`, for a bridge's port)
    host has rule FORWARD -s 172.18.0.20 -j DROP|REJECT
    host has rule -t nat POSTROUTING -s 172.18.0.0/16 -j MASQUERADE
    host has chain MINE                      (a chain of one's own; `-t nat MINE` in another table)
    host has sysctl net.ipv4.ip_forward = 1
    host has namespace netns1
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from netstep.i18n import N_, _
from netstep.state.snapshot import Snapshot, default_mtu

GRADE_RE = re.compile(r"^(\S+)\s+(has|lacks)\s+(namespace|device|address|route|rule|chain|sysctl)\b\s*(.*)$")


def _host(prefix: str) -> str:
    """A destination in normal form: a bare address is a /32, `default` stays."""
    if prefix == "default" or prefix == "0.0.0.0/0":
        return "default"
    try:
        return str(ipaddress.ip_network(prefix if "/" in prefix else f"{prefix}/32", strict=False))
    except ValueError:
        return prefix


def route_key(text: str) -> tuple[str, str, str]:
    """(destination, gateway, device) of a route as the snapshot or a student writes it."""
    words = text.removesuffix(" linkdown").split()
    fields = {}  # after the destination, words come in pairs ("via X dev Y proto Z") but for flags
    i = 1
    while i < len(words):
        if i + 1 < len(words) and words[i] in ("via", "dev", "proto", "scope", "src", "metric"):
            fields[words[i]] = words[i + 1]
            i += 2
        else:
            i += 1
    return _host(words[0]), fields.get("via", ""), fields.get("dev", "")


def _rule_options(words: list[str]) -> list[tuple[str, ...]]:
    """A rule's options as (flag, value...) groups, addresses in normal form, `!` kept."""
    out: list[tuple[str, ...]] = []
    i = 0
    while i < len(words):
        negate = words[i] == "!"
        if negate:
            i += 1
        flag = words[i] if i < len(words) else ""
        values = []
        i += 1
        while i < len(words) and not words[i].startswith("-") and words[i] != "!":
            values.append(_host(words[i]) if flag in ("-s", "-d", "--source", "--destination") else words[i])
            i += 1
        out.append((("!",) if negate else ()) + (flag, *values))
    return out


@dataclass(frozen=True)
class Essential:
    """One fact a target needs (or must not have), in the student's terms."""

    ns: str
    what: str  # namespace, device, address, route, rule, sysctl
    spec: str  # the rest of the line, as written
    present: bool = True

    def describe(self) -> str:
        verb = "has" if self.present else "lacks"
        return f"{self.ns} {verb} {self.what} {self.spec}".rstrip()

    def problem(self, snapshot: Snapshot | None = None) -> str:
        """What is wrong when it does not hold, in plain words (precise with the lab's `snapshot`)."""
        if self.what == "device" and self.present and snapshot is not None:
            state = snapshot.namespaces.get(self.ns)
            words = self.spec.split()
            link = state.link(words[0]) if state is not None and words else None
            if link is not None:
                return "; ".join(self._device_problems(link, words[1:])) or \
                    _("{ns} needs {spec}").format(ns=self.ns, spec=self.spec)
        if self.what == "namespace":
            return (_("the namespace {ns} is missing") if self.present
                    else _("the namespace {ns} should be gone")).format(ns=self.ns)
        if self.what == "sysctl":
            key, _eq, value = self.spec.partition("=")
            return _("{key} in {ns} should be {value}").format(key=key.strip(), ns=self.ns, value=value.strip())
        if self.what == "rule" and self.spec.startswith("policy "):
            _policy, table, chain, policy = self.spec.split()
            return _("the policy of {chain} ({table} table) in {ns} should be {policy}").format(
                chain=chain, table=table, ns=self.ns, policy=policy)
        if self.what == "rule":
            return (_("{ns} needs an iptables rule {spec}") if self.present
                    else _("{ns} should have no iptables rule {spec}")).format(ns=self.ns, spec=self.spec)
        what = _(WHATS.get(self.what, self.what))
        if self.present:
            return (_("{ns} needs an {what} {spec}") if _article(self.what) == "an"
                    else _("{ns} needs a {what} {spec}")).format(ns=self.ns, what=what, spec=self.spec)
        return _("{ns} should have no {what} {spec}").format(ns=self.ns, what=what, spec=self.spec)

    def idea(self) -> str:
        """What must change, and where, without giving the command (a hint's first stage)."""
        words = self.spec.split()
        if self.what == "route":
            dst = route_key(self.spec)[0]
            if not self.present:
                return _("a route to {dst} in {ns} is in the way").format(dst=dst, ns=self.ns)
            return _("{ns} needs a route to {dst}").format(ns=self.ns, dst=dst)
        if self.what == "address":
            dev = words[2] if len(words) > 2 else _("a device")
            if not self.present:
                return _("an address on {dev} in {ns} is extra").format(dev=dev, ns=self.ns)
            return _("{dev} in {ns} needs an address").format(dev=dev, ns=self.ns)
        if self.what == "rule":
            rule = shlex.split(self.spec)
            table, rule = (rule[1], rule[2:]) if rule[:1] == ["-t"] else ("filter", rule)
            if rule[:1] == ["policy"]:
                return _("the {chain} chain ({table} table) in {ns} needs another policy").format(
                    chain=rule[2], table=rule[1], ns=self.ns)
            return (_("{ns} needs a rule in the {chain} chain ({table} table)") if self.present
                    else _("a rule in the {chain} chain ({table} table) of {ns} is in the way")).format(
                ns=self.ns, chain=rule[0], table=table)
        if self.what == "sysctl":
            return _("a setting of {ns}'s network stack must change: {key}").format(
                ns=self.ns, key=self.spec.partition("=")[0].strip())
        if self.what == "device" and words:
            return (_("{ns} needs a device {name}, set up as the step says") if self.present
                    else _("the device {name} in {ns} should be gone")).format(ns=self.ns, name=words[0])
        return self.problem()

    def _device_problems(self, link, rest: list[str]) -> list[str]:
        out = []
        for i, word in enumerate(rest):
            value = rest[i + 1] if i + 1 < len(rest) else ""
            if word == "up" and not link.up:
                out.append(_("{dev} in {ns} is DOWN, it should be UP").format(dev=link.name, ns=self.ns))
            elif word == "down" and link.up:
                out.append(_("{dev} in {ns} is UP, it should be DOWN").format(dev=link.name, ns=self.ns))
            elif word == "master" and link.master != value:
                out.append((_("{dev} in {ns} should be a port of {bridge}, not of {other}") if link.master
                            else _("{dev} in {ns} should be a port of {bridge}")).format(
                    dev=link.name, ns=self.ns, bridge=value, other=link.master))
            elif word == "nomaster" and link.master:
                out.append(_("{dev} in {ns} should be a port of no bridge (it is one of {bridge})").format(
                    dev=link.name, ns=self.ns, bridge=link.master))
            elif word == "peer" and (link.peer or "").split("@")[0] != value:
                out.append(_("{dev} in {ns} should be paired with {peer}").format(dev=link.name, ns=self.ns,
                                                                                  peer=value))
            elif word == "type" and link.kind != value:
                out.append(_("{dev} in {ns} should be a {kind}, not a {actual}").format(
                    dev=link.name, ns=self.ns, kind=value, actual=link.kind))
            elif word == "mtu" and str(mtu := link.mtu or default_mtu(link.kind)) != value:
                out.append(_("{dev} in {ns} should have mtu {mtu}, not {actual}").format(
                    dev=link.name, ns=self.ns, mtu=value, actual=mtu))
            elif word == "hairpin" and link.hairpin != (value == "on"):
                out.append(_("{dev} in {ns} should have hairpin {value}").format(dev=link.name, ns=self.ns,
                                                                                 value=value))
        return out

    def holds(self, snapshot: Snapshot) -> bool:
        policy = policy_holds(self, snapshot)
        return policy if policy is not None else self._found(snapshot) == self.present

    def _found(self, snapshot: Snapshot) -> bool:
        if self.what == "namespace":
            return self.ns in snapshot.namespaces
        state = snapshot.namespaces.get(self.ns)
        if state is None:
            return False
        words = self.spec.split()
        if self.what == "device":
            link = state.link(words[0]) if words else None
            if link is None:
                return False
            rest = words[1:]
            for i, word in enumerate(rest):
                if (word in ("up", "UP") and not link.up) or (word in ("down", "DOWN") and link.up):
                    return False
                if word == "master" and i + 1 < len(rest) and link.master != rest[i + 1]:
                    return False
                if word == "nomaster" and link.master:
                    return False
                if word == "peer" and i + 1 < len(rest) and (link.peer or "").split("@")[0] != rest[i + 1]:
                    return False
                if word == "type" and i + 1 < len(rest) and link.kind != rest[i + 1]:
                    return False
                if word == "mtu" and i + 1 < len(rest) and str(link.mtu or default_mtu(link.kind)) != rest[i + 1]:
                    return False
                if word == "hairpin" and i + 1 < len(rest) and link.hairpin != (rest[i + 1] == "on"):
                    return False
            return True
        if self.what == "address":
            cidr = words[0]
            dev = words[2] if len(words) > 2 and words[1] in ("on", "dev") else ""
            return any(entry.split(" ", 1)[1] == cidr and (not dev or entry.split(" ", 1)[0] == dev)
                       for entry in state.addresses)
        if self.what == "route":
            want = route_key(self.spec)
            return any(_route_matches(route_key(r), want) for r in state.routes)
        if self.what == "sysctl":
            key, _eq, value = self.spec.partition("=")
            return dict(state.sysctls).get(key.strip()) == value.strip()
        if self.what == "rule":
            return any(self._rule_matches(rule) for rule in state.rules)
        if self.what == "chain":
            table, chain = (words[1], words[2]) if words[:1] == ["-t"] and len(words) > 2 else ("filter", words[0])
            return f"{table} -N {chain}" in state.rules
        return False

    def _rule_matches(self, rule: str) -> bool:
        words = shlex.split(self.spec)
        table = "filter"
        if words[:1] == ["-t"] and len(words) > 1:
            table, words = words[1], words[2:]
        chain, words = words[0], words[1:]
        have = shlex.split(rule)
        if have[:3] != [table, "-A", chain]:
            return False
        have_options = _rule_options(have[3:])
        targets: set[str] = set()
        for option in _rule_options(words):
            if option[0] == "-j":
                targets = set(option[1].split("|")) if len(option) > 1 else set()
            elif option not in have_options:
                return False
        jump = next((o[1] for o in have_options if o[0] == "-j" and len(o) > 1), "")
        return not targets or jump in targets


def _route_matches(have: tuple[str, str, str], want: tuple[str, str, str]) -> bool:
    return have[0] == want[0] and (not want[1] or have[1] == want[1]) and (not want[2] or have[2] == want[2])


WHATS = {"namespace": N_("namespace"), "device": N_("device"), "address": N_("address"),  # (translated where said)
         "route": N_("route"), "rule": N_("rule"), "sysctl": N_("sysctl"), "chain": N_("chain")}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def parse_essential(line: str) -> Essential:
    """A grade line (`host has route 172.18.0.10/32 dev veth0`) as an Essential; ValueError if not one."""
    match = GRADE_RE.match(line.strip())
    if not match:
        raise ValueError("a grade line reads 'NAMESPACE has|lacks namespace|device|address|route|rule|chain|"
                         f"sysctl ...' or is a check line: {line!r}")
    ns, verb, what, spec = match.groups()
    if what != "namespace" and not spec.strip():
        raise ValueError(f"say which {what}: {line!r}")
    if what == "sysctl" and "=" not in spec:
        raise ValueError(f"a sysctl line reads 'NS has sysctl KEY = VALUE': {line!r}")
    return Essential(ns, what, " ".join(spec.split()), verb == "has")


def derived(before: Snapshot, after: Snapshot) -> list[Essential]:
    """The essentials of a step that has no grade block: what its commands changed, in
    normal form (routes the kernel derives from an address follow the address)."""
    out: list[Essential] = []
    for ns in after.namespaces.keys() - before.namespaces.keys():
        out.append(Essential(ns, "namespace", ""))
    for ns in before.namespaces.keys() - after.namespaces.keys():
        out.append(Essential(ns, "namespace", "", present=False))
    for ns, now in after.namespaces.items():
        was = before.namespaces.get(ns)
        old_links = {link.name: link for link in was.links} if was else {}
        for link in now.links:
            old = old_links.get(link.name)
            bits = []
            if old is None:
                bits.append(f"type {link.kind}")
                if link.peer:
                    bits.append(f"peer {link.peer.split('@')[0]}")
            if old is None or old.up != link.up:
                bits.append("up" if link.up else "down")
            if (old is None and link.master) or (old is not None and old.master != link.master):
                bits.append(f"master {link.master}" if link.master else "nomaster")
            if (old.mtu if old else None) != link.mtu:
                bits.append(f"mtu {link.mtu or default_mtu(link.kind)}")
            if (old.hairpin if old else False) != link.hairpin:
                bits.append(f"hairpin {'on' if link.hairpin else 'off'}")
            if bits:
                out.append(Essential(ns, "device", " ".join([link.name, *bits])))
        now_names = {link.name for link in now.links}
        for name in old_links.keys() - now_names:
            out.append(Essential(ns, "device", name, present=False))
        old_addresses = set(was.addresses) if was else set()
        for entry in now.addresses:
            if entry not in old_addresses:
                dev, _sp, cidr = entry.partition(" ")
                out.append(Essential(ns, "address", f"{cidr} on {dev}"))
        for entry in old_addresses - set(now.addresses):
            dev, _sp, cidr = entry.partition(" ")
            if dev in now_names:
                out.append(Essential(ns, "address", f"{cidr} on {dev}", present=False))
        old_routes = {route_key(r) for r in was.routes} if was else set()
        new_routes = {route_key(r) for r in now.routes}
        kernel = {route_key(r) for r in now.routes if " proto kernel" in r}
        for key in sorted(new_routes - old_routes - kernel):
            out.append(Essential(ns, "route", _route_text(key)))
        for key in sorted(old_routes - new_routes):
            if not key[2] or key[2] in now_names:
                out.append(Essential(ns, "route", _route_text(key), present=False))
        old_rules = set(was.rules) if was else set()
        for rule in now.rules:
            if rule not in old_rules:
                out.append(_rule_essential(ns, rule, True))
        for rule in old_rules - set(now.rules):
            out.append(_rule_essential(ns, rule, False))
        old_sysctls = dict(was.sysctls) if was else {}
        if was is not None:
            for key, value in now.sysctls:
                if old_sysctls.get(key) != value:
                    out.append(Essential(ns, "sysctl", f"{key} = {value}"))
    return out


def _route_text(key: tuple[str, str, str]) -> str:
    dst, via, dev = key
    return " ".join(p for p in (dst, f"via {via}" if via else "", f"dev {dev}" if dev else "") if p)


def _rule_essential(ns: str, rule: str, present: bool) -> Essential:
    words = shlex.split(rule)
    table, op, chain, rest = words[0], words[1], words[2], words[3:]
    if op == "-P":
        return Essential(ns, "rule", f"policy {table} {chain} {rest[0] if present else 'ACCEPT'}")
    if op == "-N":
        return Essential(ns, "chain", chain if table == "filter" else f"-t {table} {chain}", present)
    spec = " ".join(shlex.quote(w) for w in rest)
    return Essential(ns, "rule", f"{'' if table == 'filter' else f'-t {table} '}{chain} {spec}", present)


def policy_holds(essential: Essential, snapshot: Snapshot) -> bool | None:
    """A chain's policy (`policy filter FORWARD DROP`): None if `essential` is not one."""
    words = essential.spec.split()
    if essential.what != "rule" or words[:1] != ["policy"] or len(words) != 4:
        return None
    state = snapshot.namespaces.get(essential.ns)
    if state is None:
        return False
    table, chain, policy = words[1:]
    found = next((r.split()[3] for r in state.rules if r.split()[:3] == [table, "-P", chain]), "ACCEPT")
    return (found == policy) == essential.present
