"""Foreign state on a stand-in machine: run me inside `unshare --net --mount --propagation private`.

    foreign_scenario.py LAB SEED foreign|sweep

A fresh tmpfs on /run (in this private mount namespace only) holds another tool's
namespaces (/run/netns) and netstep's labs, so nothing of this scenario is visible from,
or left on, the machine. The namespace this script runs in plays a VM that netstep did
not make: the article's eth0 and router (tests/hostmode_scenario.py builds them, with
docker0, a veth pair, Docker's chains and a custom rp_filter), and more foreign state: a
namespace named netns0 (a lesson's name) and one named blue, wired to this namespace;
more bridges, veths and addresses; Docker's full rule set in filter, nat, mangle and
ip6tables; routes in other tables and a policy rule; a permanent neighbour; custom
sysctls; an HTTP server of another tool. Then:

1. the whole course in host mode, rollback --all, lesson 3, reset;
2. kill -9 of host-mode `run all` at seeded random moments, each followed by reset;
3. the whole course in sandbox mode beside the foreign namespaces, then reset;
4. name collisions in host mode: a foreign ROOT_NS chain, a foreign br0 bridge;
5. rules identical to the lessons' own, made by another tool (the course without checks,
   then rollback and reset);
6. a per-device forwarding value of another tool, across lesson 6's ip_forward and back.

With `sweep` instead, it crashes host-mode `run all` (crash_at.py: SIGKILL between the
journal's record of an undo and its kernel change, and right after the change) at the
first action of each kind, resets, and records what the machine kept; then repairs the
machine for the next one.

It prints one JSON object: the state before, after each phase, the exit codes and errors.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from hostmode_scenario import build_machine, sh  # noqa: E402
from machine_guard import differences, machine_state  # noqa: E402
from relsupport import ENV, crash_points, crash_run, last_step, midway_points  # noqa: E402
from support import REPO  # noqa: E402

from netstep.kernel import namespaces  # noqa: E402

FOREIGN_SERVER = ("10.0.2.15", 9090)  # a port no lesson uses (lesson 12 serves 8080 on the host)
LAB = [""]  # the scenario's lab name, set by main()


def quiet(*argv: str) -> None:
    """A clean-up command whose failure is no news (what it removes may be gone already)."""
    subprocess.run(argv, capture_output=True, check=False)


def private_run() -> None:
    """A tmpfs on /run, seen only in this mount namespace."""
    assert os.environ.get("NETSTEP_REL_IN_UNSHARE") == "1", "run me only through unshare"
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "netstep-rel", "/run")
    os.makedirs("/run/netns")


def add_foreign_state() -> dict[str, list[str]]:
    """Everything another tool might have made; returns what it made, by kind."""
    made: dict[str, list[str]] = {"processes": [f"another tool's HTTP server on {FOREIGN_SERVER}"]}
    # Another tool's namespaces, one with a lesson's name, wired to this namespace.
    sh("ip", "netns", "add", "netns0")
    sh("ip", "netns", "add", "blue")
    sh("ip", "link", "add", "vnet0", "type", "veth", "peer", "name", "vnet1")
    sh("ip", "link", "set", "vnet1", "netns", "netns0")
    sh("ip", "addr", "add", "10.200.0.1/24", "dev", "vnet0")
    sh("ip", "link", "set", "vnet0", "up")
    sh("ip", "-n", "netns0", "link", "set", "lo", "up")
    sh("ip", "-n", "netns0", "addr", "add", "10.200.0.2/24", "dev", "vnet1")
    sh("ip", "-n", "netns0", "link", "set", "vnet1", "up")
    sh("ip", "-n", "blue", "addr", "add", "10.201.0.1/32", "dev", "lo")
    sh("ip", "-n", "blue", "link", "set", "lo", "up")
    made["namespaces"] = ["/run/netns/netns0", "/run/netns/blue"]
    # More devices: vethfor0 (made by build_machine) plugged into docker0, another bridge.
    sh("ip", "link", "set", "vethfor0", "master", "docker0")
    sh("ip", "link", "add", "br-foreign", "type", "bridge")
    sh("ip", "addr", "add", "192.168.77.1/24", "dev", "br-foreign")
    sh("ip", "link", "set", "br-foreign", "up")
    made["devices"] = ["docker0", "vethfor0", "vethfor1", "vnet0", "br-foreign"]
    made["addresses"] = ["172.17.0.1/16 docker0", "10.200.0.1/24 vnet0", "192.168.77.1/24 br-foreign"]
    # Docker's rule set beyond what build_machine adds, in the chains the lessons use too.
    rules = [
        ["-N", "DOCKER-ISOLATION-STAGE-1"], ["-N", "DOCKER-ISOLATION-STAGE-2"],
        ["-I", "FORWARD", "2", "-j", "DOCKER-ISOLATION-STAGE-1"],
        ["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"],
        ["-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"],
        ["-A", "DOCKER-ISOLATION-STAGE-1", "-i", "docker0", "!", "-o", "docker0", "-j", "DOCKER-ISOLATION-STAGE-2"],
        ["-A", "DOCKER-ISOLATION-STAGE-1", "-j", "RETURN"],
        ["-A", "DOCKER-ISOLATION-STAGE-2", "-o", "docker0", "-j", "DROP"],
        ["-A", "DOCKER-ISOLATION-STAGE-2", "-j", "RETURN"],
        ["-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j",
         "DOCKER"],
        ["-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"],
        ["-t", "mangle", "-N", "FOREIGN"],
        ["-t", "mangle", "-A", "FOREIGN", "-j", "RETURN"],
        ["-t", "mangle", "-A", "PREROUTING", "-i", "br-foreign", "-j", "FOREIGN"],
    ]
    for rule in rules:
        sh("iptables", *rule)
    made["iptables"] = [
        "-N DOCKER", "-N DOCKER-USER", "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A DOCKER-USER -j RETURN",
        "-t nat -N DOCKER", "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",  # the ones above: build_machine's
        *(" ".join(r) for r in rules)]
    try:
        sh("ip6tables", "-A", "INPUT", "-s", "fd00:77::/64", "-j", "ACCEPT")
        made["ip6tables"] = ["-A INPUT -s fd00:77::/64 -j ACCEPT"]
    except subprocess.CalledProcessError:
        made["ip6tables"] = []
    # Routes in the main table and another one, and a policy rule.
    sh("ip", "route", "add", "10.99.0.0/16", "via", "10.0.2.254", "dev", "eth0")
    sh("ip", "route", "add", "default", "via", "10.0.2.254", "dev", "eth0", "table", "100")
    sh("ip", "rule", "add", "from", "10.99.0.0/16", "lookup", "100", "priority", "1000")
    made["routes"] = ["10.99.0.0/16 via 10.0.2.254", "default via 10.0.2.254 table 100"]
    made["policy rules"] = ["from 10.99.0.0/16 lookup 100"]
    sh("ip", "neigh", "add", "10.0.2.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "permanent")
    made["neighbours"] = ["10.0.2.99 permanent"]
    sysctls = {"net.ipv4.ip_local_port_range": "20000 40000", "net.ipv4.icmp_echo_ignore_broadcasts": "0",
               "net.ipv4.conf.br-foreign.accept_local": "1", "net.ipv4.tcp_syn_retries": "4"}
    for key, value in sysctls.items():
        sh("sysctl", "-qw", f"{key}={value}")
    made["sysctls"] = ["net.ipv4.conf.all.rp_filter=2 (build_machine)", *(f"{k}={v}" for k, v in sysctls.items())]
    return made


def start_foreign_server() -> subprocess.Popen:
    """Another tool's HTTP server in this namespace: reset must leave it running."""
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", FOREIGN_SERVER[0],
                             str(FOREIGN_SERVER[1])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd="/")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not server_answers():
        time.sleep(0.05)
    return proc


def server_answers() -> bool:
    import socket

    try:
        with socket.create_connection(FOREIGN_SERVER, timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def settle() -> None:
    """Let IPv6 duplicate address detection finish, so that link-local routes stop appearing."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "tentative" in sh("ip", "-6", "addr"):
        time.sleep(0.1)


def full_state() -> dict:
    settle()
    state = machine_state(netstep_marker="/" + LAB[0])
    state["permanent neighbours"] = sh("ip", "neigh", "show", "nud", "permanent").splitlines()
    state["netns0 (foreign) inside"] = sorted(sh("ip", "-n", "netns0", "-o", "-4", "addr").splitlines())
    state["blue (foreign) inside"] = sorted(sh("ip", "-n", "blue", "-o", "-4", "addr").splitlines())
    state["foreign namespace inodes"] = sorted(f"{n} {os.stat('/run/netns/' + n).st_ino}"
                                               for n in os.listdir("/run/netns"))
    state["foreign server answers"] = [str(server_answers())]
    return state


def netstep(lab: str, upstream: str | None, *args: str, timeout: float = 300) -> dict:
    host = ("--host", "--internet", "203.0.113.8", "--upstream", upstream) if upstream else ()
    r = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, *host, *args], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    checks = [c for line in r.stdout.splitlines() if line.startswith("{") and "event" not in (c := json.loads(line))]
    return {"args": " ".join(args), "exit": r.returncode, "stderr": r.stderr[-3000:], "checks": checks,
            "failed": [c for c in checks if not c.get("ok")]}


def mid_action(lab: str) -> str | None:
    """The action the lab's journal shows as begun and not yet recorded as done, if any."""
    last = last_step(lab)
    if last and not last["complete"] and last["entries"] and last["entries"][-1]["undo"] is None:
        return f"step {last['ref']}: {last['entries'][-1]['do']['type']}"
    return None


def collision(out: dict, what: str, lab: str, upstream: str, lesson: str) -> None:
    """Host-mode `run LESSON` into a foreign object named like the lesson's own, then reset."""
    out[f"{what}_before"] = full_state()
    out[f"{what}_collision"] = netstep(lab, upstream, "run", lesson, "--yes", "--json")
    out[f"{what}_after_run"] = full_state()
    out[f"{what}_reset"] = netstep(lab, upstream, "reset")
    out[f"{what}_after_reset"] = full_state()


def kill_trials(lab: str, upstream: str, rng: random.Random, count: int, seconds: float) -> list[dict]:
    """kill -9 of host-mode `run all` (alternately at a random time and in the middle of an
    action, as the journal shows it), then reset. `seconds` is how long the first run took;
    a run that ends before its kill (later runs are often faster: warm caches) is reset and
    tried again with half the delay, up to three times, so that the kills do land."""
    trials = []
    for trial in range(count):
        delay = rng.uniform(0.3, seconds * 0.95)
        for _attempt in range(3):
            moment, still_running, proc, err = _kill_run(lab, upstream, delay, mid_action_wanted=trial % 2 == 1,
                                                         patience=seconds * 3)
            reset = netstep(lab, upstream, "reset")
            if still_running:
                break
            delay /= 2
        trials.append({"moment": moment, "killed": still_running and proc.returncode == -9,
                       "run_stderr": err[-1500:], "reset": reset, "after": full_state()})
    return trials


def _kill_run(lab: str, upstream: str, delay: float, *, mid_action_wanted: bool, patience: float):
    """Start host-mode `run all` and kill -9 it after `delay` (at the first action in progress
    after it, if `mid_action_wanted`): (moment, whether it was still running, proc, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "netstep", "--lab", lab, "--host", "--internet",
                             "203.0.113.8", "--upstream", upstream, "run", "all", "--yes", "--json"],
                            cwd=REPO, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    moment = f"after {delay:.2f} s"
    if not mid_action_wanted:
        time.sleep(delay)
    else:
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < patience:
            if time.monotonic() - started > delay and (seen := mid_action(lab)):
                moment = f"mid-action ({seen})"
                break
            time.sleep(0.0005)
    still_running = proc.poll() is None
    if still_running:
        os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    return moment, still_running, proc, err


def forwarding(lab: str, upstream: str) -> dict:
    """A per-device forwarding value of another tool, while ip_forward is 0: lesson 6 turns
    ip_forward on, rollback turns it off again. Does the device's value survive?"""
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab
    from netstep.core.reset import reset_lab
    from netstep.course.course import Course

    course = Course.load(mode="host")  # (what host mode runs: no sandbox-only lesson)
    key = "/proc/sys/net/ipv4/conf/vnet0/forwarding"
    sh("sysctl", "-qw", "net.ipv4.ip_forward=0")
    sh("sysctl", "-qw", "net.ipv4.conf.vnet0.forwarding=1")
    before = Path(key).read_text().strip()
    lab_ = Lab(lab, host=True, internet="203.0.113.8", upstream=upstream)
    with lab_:
        engine = Engine(lab_, course)
        target = next(i for i, step in enumerate(course.steps)  # the step that turns forwarding on
                      if any(getattr(a, "key", "") == "net.ipv4.ip_forward" and a.value == "1"
                             for a in step.actions)) + 1
        list(engine.goto(target))
        after_lesson = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        engine.rollback_all()
        reset_lab(lab_)
    after = Path(key).read_text().strip()
    sh("sysctl", "-qw", "net.ipv4.conf.vnet0.forwarding=0")
    return {"before": before, "ip_forward during lesson 6": after_lesson, "after": after}


def identical_rules(lab: str, upstream: str) -> dict:
    """Another tool made exactly the rules lesson 6 and 7 add: netstep removes only its own."""
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab
    from netstep.core.reset import reset_lab
    from netstep.course.course import Course

    course = Course.load(mode="host")  # (what host mode runs: no sandbox-only lesson)
    same = [["-t", "nat", "-A", "POSTROUTING", "-s", "172.18.0.0/16", "!", "-o", "br0", "-j", "MASQUERADE"],
            ["-A", "FORWARD", "-i", "br0", "!", "-o", "br0", "-j", "ACCEPT"],
            ["-t", "nat", "-A", "PREROUTING", "-d", "10.0.2.15/32", "-p", "tcp", "--dport", "5005", "-j", "DNAT",
             "--to-destination", "172.18.0.10:5000"]]
    plain = machine_state()["iptables"]
    for rule in same:
        sh("iptables", *rule)
    before = full_state()
    foreign_lines = [line for line in before["iptables"] if line not in plain]
    out = {"rules": [" ".join(r) for r in same], "foreign_lines": foreign_lines, "before": before, "error": None}
    lab_ = Lab(lab, host=True, internet="203.0.113.8", upstream=upstream)
    with lab_:
        try:
            engine = Engine(lab_, course)
            list(engine.goto(len(course.steps)))
            out["middle"] = full_state()
            engine.rollback_all()
            out["after_rollback"] = full_state()
        except Exception as exc:  # reported, then the machine is reset all the same
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["middle"] = out["after_rollback"] = full_state()
        out["reset_problems"] = reset_lab(lab_)
    out["after_reset"] = full_state()
    for rule in same:
        subprocess.run(["iptables", *[w if w != "-A" else "-D" for w in rule]], capture_output=True, check=False)
    return out


def repair(before: dict) -> None:
    """Put the machine back as `before` had it, after a crash left something of the lab."""
    links = {line.split()[0] for line in before["links"]}
    for line in machine_state()["links"]:
        name = line.split()[0]
        if name not in links:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    subprocess.run(["iptables-restore"], input="\n".join(before["iptables"]) + "\n", text=True,
                   capture_output=True, check=False)
    now = machine_state()["sysctls"]
    for key, value in before["sysctls"].items():
        if now.get(key) not in (None, value):
            subprocess.run(["sysctl", "-qw", f"{key}={value}"], capture_output=True, check=False)


def sweep(lab: str, upstream: str) -> list[dict]:
    from netstep.course.course import Course

    results = []
    before = full_state()
    course = Course.load(mode="host")  # (what host mode runs: no sandbox-only lesson)
    points = [*itertools.product(crash_points(course), ("prepared", "after")),
              *[(point, "midway") for point in midway_points(course)]]
    for (ref, command), when in points:
        run = crash_run(lab, command, when, host=("--host", "--internet", "203.0.113.8", "--upstream", upstream))
        reset = netstep(lab, upstream, "reset")
        after = full_state()
        left = differences(before, after)
        results.append({"step": ref, "command": command, "when": when, "crashed": run.returncode == -signal.SIGKILL,
                        "run_stderr": run.stderr[-1500:], "reset": reset, "left": left})
        if left:
            repair(before)
            results[-1]["repaired"] = not differences(before, full_state())
    return results


def main() -> int:
    lab, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    LAB[0] = lab
    rng = random.Random(seed)
    private_run()
    upstream = "/run/netstep-upstream"
    build_machine(upstream)
    made = add_foreign_state()
    server = start_foreign_server()
    out: dict = {"made": made}
    try:
        if mode == "sweep":
            out["sweep"] = sweep(lab, upstream)
            print(json.dumps(out))
            return 0
        out["before"] = before = full_state()
        started = time.monotonic()
        out["course"] = netstep(lab, upstream, "run", "all", "--yes", "--json")
        seconds = time.monotonic() - started
        out["middle"] = full_state()
        out["rollback"] = netstep(lab, upstream, "rollback", "--all")
        out["after_rollback"] = full_state()
        out["lesson3"] = netstep(lab, upstream, "run", "lesson3", "--yes", "--json")
        out["reset"] = netstep(lab, upstream, "reset")
        out["after_reset"] = full_state()

        out["kills"] = kill_trials(lab, upstream, rng, int(os.environ.get("NETSTEP_REL_HOST_KILLS", "4")), seconds)

        out["sandbox"] = netstep(lab, None, "run", "all", "--yes", "--json")
        out["sandbox_middle"] = full_state()
        out["sandbox_reset"] = netstep(lab, None, "reset")
        out["after_sandbox"] = full_state()

        sh("iptables", "-N", "ROOT_NS")
        sh("iptables", "-A", "ROOT_NS", "-s", "10.98.0.0/16", "-j", "RETURN")
        collision(out, "chain", lab, upstream, "lesson1")
        quiet("iptables", "-F", "ROOT_NS")
        quiet("iptables", "-X", "ROOT_NS")

        sh("ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "br0")
        collision(out, "bridge", lab, upstream, "lesson4")
        quiet("ip", "link", "del", "br0")

        out["identical"] = identical_rules(lab, upstream)
        out["forwarding"] = forwarding(lab, upstream)
        out["final"] = full_state()
        out["final_vs_before"] = differences(before, out["final"])
    finally:
        server.terminate()
        server.wait()
        namespaces.remove(upstream)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
