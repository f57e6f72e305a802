"""Promise 5: bad input is refused cleanly.

- The parser, fuzzed (hypothesis) with the real lesson files mutated at random: truncated,
  lines deleted, swapped and duplicated, fences broken, unknown commands, wrong arguments,
  shell metacharacters, paths out of the lab, binary junk, NUL bytes, bad file names.
  `parse_lesson` either returns a Lesson whose every action is one of the grammar's
  (netstep.course.actions.ACTIONS) and whose command text parses back to the same action, or
  raises NetstepError; anything else is a failure. No process is started while parsing.
- A sample of mutated lessons, each carrying an attempt to run `touch FLAG` outside the
  grammar, goes through the CLI (`run PATH --yes --json` on a fresh lab): no traceback, and
  the flag file never appears; reset leaves nothing.
- Wrong CLI arguments, unknown names, non-root, missing tools: one clear message on
  stderr, a non-zero exit, no traceback. Anything with --host runs inside `unshare --net`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relsupport import (
    ENV,
    STATS,
    assert_clean_refusal,
    destroy_quietly,
    json_lines,
    leftovers,
    master_seed,
    netstep,
    note,
    show,
)
from support import REPO, needs_root, real_lesson_files, unique_name

from netstep.course.actions import ACTIONS
from netstep.course.commands import SHELL_CHARS, parse
from netstep.course.lessons import parse_lesson
from netstep.errors import NetstepError
from netstep.kernel.tools import SBIN

FUZZ_EXAMPLES = int(os.environ.get("NETSTEP_REL_FUZZ", "2000"))
CLI_SAMPLES = int(os.environ.get("NETSTEP_REL_FUZZ_CLI", "20"))
LESSONS = {p.name: p.read_text(encoding="utf-8") for p in real_lesson_files()}
pytestmark = pytest.mark.skipif(len(LESSONS) < 7, reason="needs the seven lessons")

PROMPTS = ["host# ", "netns0# ", "netns1# ", "upstream# ", "host#", "sudo# ", "a..# ", "-x# ", "# ", "HOST# "]
BAD_COMMANDS = [
    "touch {flag}", "sh -c 'touch {flag}'", "bash -c \"touch {flag}\"", "/bin/touch {flag}",
    "ip netns exec netns0 touch {flag}", "ip netns exec netns0 sh -c 'touch {flag}'",
    "ip link add veth9 type bridge; touch {flag}", "ip link add $(touch {flag}) type bridge",
    "ip link add `touch {flag}` type bridge", "iptables -A INPUT -j ACCEPT && touch {flag}",
    "iptables -A INPUT -m comment --comment \"$(touch {flag})\" -j ACCEPT",
    "sysctl -w net.ipv4.ip_forward=1|touch {flag}", "python3 -c \"open('{flag}', 'w')\"",
    "python3 -m http.server --bind 127.0.0.1 8000 & touch {flag}", "sudo touch {flag}",
    "ip netns exec netns0 sudo python3 -c 'import os; os.system(\"touch {flag}\")'",
    "ip route add default via 10.0.2.2 > {flag}", "ip link set lo up\ntouch {flag}",
]
WRONG_ARGUMENTS = [
    "ip link add veth0 type veth peer", "ip link add veth0 type macvlan", "ip addr add 300.1.1.1/16 dev veth0",
    "ip addr add 10.0.0.1 dev veth0", "ip route add default via", "ip route add 10.0.0.1/8 dev veth0",
    "ip route add default proto static dev eth0", "iptables -A", "iptables -t filterx -A INPUT -j ACCEPT",
    "iptables -A INPUT -j", "iptables -A INPUT --set-mark 1 -j ACCEPT", "iptables -P FORWARD REJECT",
    "iptables -F", "iptables -t nat -F POSTROUTING", "sysctl -w kernel.core_pattern=x", "sysctl net.ipv4.ip_forward",
    "sysctl -w net.ipv4.../../../kernel/x=1", "ip netns add ../../../etc", "ip netns add host",
    "ip netns delete upstream", "ip link set veth0 netns ../../../proc/1/ns/net", "ip link set veth0 netns /proc/1",
    "ip netns exec ../../proc/1 ip link add x type bridge", "ip link add a-very-long-device-name type bridge",
    "ip link delete eth0 extra", "ip -n netns0 link set lo up", "ip netns", "ip", "iptables", "python3",
    "python3 -m http.server --bind 10.0.0.1 99999", "ip link set lo", "ip addr flush dev eth0", "ip neigh flush all",
]
BAD_CHECKS = [
    "ping host -> $(touch {flag}) reachable", "ping netns0 -> 10.0.2.2 maybe", "tcp host -> 10.0.2.2 reachable",
    "ping host -> 10.0.2.2:80 reachable", "http host -> internet:0 unreachable", "curl host -> 1.2.3.4 reachable",
    "ping ../../proc/1/ns/net -> 10.0.2.2 reachable", "ping host -> 10.0.2.2 reachable (refused)",
    "ping host -> 10.0.2.2 unreachable (bogus)", "ping -> reachable",
]
BAD_SHOWS = ["links ../../../../proc/1/ns/net", "everything host", "routes", "links host; touch {flag}"]
JUNK = ["\x00", "\ufffd", "\u202e", "\x1b[31m", "\r", "\x0c", "[/]", "[bold]x[/bold]", "{}", "%s", "\\", "~~~",
        "```", "```console", "```check", "```show", "```notes", "## ", "# ", "#"]
TOKENS = [";", "|", "&", "$(x)", "`x`", ">", "<", "*", "?", "{a,b}", "'", '"', "\\", "--", "-", "0", "-1",
          "65536", "999.1.1.1/33", "../..", "/proc/1/ns/net", "host", "upstream", "all", "dev", "via", "netns",
          "type", "veth", "bridge", "peer", "name", "-j", "-t", "nat", "ACCEPT", "=", "x" * 40, "sudo", "->",
          "10.0.2.2:", ":80", "internet:", "1.2.3.4:x", "172.18.0.10:99999", "(refused)", "(x)", "()", "reachable",
          "unreachable", "ping", "tcp", "http", "links", "routes", "all"]


def block_lines(lines: list[str], kinds: tuple[str, ...] = ("console",)) -> list[int]:
    """Indexes of the lines inside fenced blocks of `kinds` (where injected text gets parsed)."""
    inside, found = None, []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            inside = line.strip()[3:] if inside is None else None
            continue
        if inside in kinds:
            found.append(i)
    return found


def prose_lines(lines: list[str]) -> list[int]:
    """Indexes of the lines outside every fenced block (fences included), after the title."""
    inside, found = False, []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside and i > 0:
            found.append(i)
    return found


def outside_spots(lines: list[str]) -> list[int]:
    """Indexes right after a step heading, where a new block can start."""
    return [i + 1 for i, line in enumerate(lines) if line.startswith("## ")]


@st.composite
def mutated_lesson(draw, flag: str = "/nonexistent/flag"):
    """(file name, bytes): a real lesson mutated by one to four random operations."""
    name = draw(st.sampled_from(sorted(LESSONS)))
    lines = LESSONS[name].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "delete", "swap", "duplicate", "inject", "inject", "inject",
                                   "mangle", "mangle", "junk", "bytes"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if op == "truncate":
            text = "".join(lines)
            lines = [text[: draw(st.integers(0, len(text)))]]
        elif op == "delete":
            del lines[i]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "inject":
            kind = draw(st.sampled_from(["command", "command", "wrong", "check", "check", "show"]))
            if kind in ("command", "wrong"):
                where = draw(st.sampled_from(block_lines(lines) or [i]))
                pool = BAD_COMMANDS if kind == "command" else WRONG_ARGUMENTS
                line = draw(st.sampled_from(PROMPTS)) + draw(st.sampled_from(pool))
            else:
                pool = BAD_CHECKS if kind == "check" else BAD_SHOWS
                line = draw(st.sampled_from(pool))
                into = block_lines(lines, (kind,))
                if into and draw(st.booleans()):
                    where = draw(st.sampled_from(into))
                else:  # a new block of its own, after a step heading
                    where = draw(st.sampled_from(outside_spots(lines) or [i]))
                    line = f"```{kind}\n{line}\n```"
            lines.insert(where, line.format(flag=flag) + "\n")
        elif op == "mangle":  # change, drop or add a word of a command, check or show line
            spots = block_lines(lines, ("console", "check", "show")) or [i]
            where = draw(st.sampled_from(spots))
            words = lines[where].split(" ")
            k = draw(st.integers(0, len(words)))
            action = draw(st.sampled_from(["replace", "drop", "add"]))
            token = draw(st.one_of(st.sampled_from(TOKENS), st.text(min_size=1, max_size=8)))
            if action == "replace" and k < len(words):
                words[k] = token
            elif action == "drop" and k < len(words):
                del words[k]
            else:
                words.insert(k, token)
            lines[where] = " ".join(words)
        elif op == "junk":
            lines.insert(i, draw(st.sampled_from(JUNK)) + draw(st.text(max_size=20)) + "\n")
        else:
            text = "".join(lines).encode()
            at = draw(st.integers(0, len(text)))
            raw = text[:at] + draw(st.binary(min_size=1, max_size=16)) + text[at:]
            return _file_name(draw, name), raw
    return _file_name(draw, name), "".join(lines).encode("utf-8", errors="surrogatepass")


def _file_name(draw, name: str) -> str:
    return draw(st.sampled_from([name] * 8 + ["1-netns.md", "01-NETNS.md", "01-netns.txt", "01-.md", "x.md",
                                              "01-net ns.md", "99-extra.md"]))


@contextmanager
def no_processes():
    """Fail on any attempt to start a process (parsing must never run anything)."""
    started: list[str] = []

    def refuse(*args, **kwargs):
        started.append(repr(args)[:200])
        raise AssertionError(f"a process was started while parsing: {args!r}")

    names = [(subprocess, "Popen"), (os, "system"), (os, "execv"), (os, "execve"), (os, "execvp"),
             (os, "posix_spawn"), (os, "posix_spawnp"), (os, "fork"), (os, "popen")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr in names if hasattr(mod, attr)]
    for mod, attr, _ in saved:
        setattr(mod, attr, refuse)
    try:
        yield started
    finally:
        for mod, attr, real in saved:
            setattr(mod, attr, real)


def check_parse(folder: Path, filename: str, raw: bytes) -> str:
    """Parse one mutated file; the outcome ('lesson' or 'refused'), or an AssertionError."""
    path = folder / filename
    path.write_bytes(raw)
    with no_processes() as started:
        try:
            lesson = parse_lesson(path)
        except NetstepError:
            outcome = "refused"
        else:
            outcome = "lesson"
            for step in lesson.steps:
                for command in step.commands:
                    assert type(command.action) in ACTIONS.values(), command
                    assert ACTIONS[type(command.action).__name__] is type(command.action)
                    if type(command.action).__name__ != "EtcFile":  # (`echo 'nameserver X' > FILE`: a
                        # quote and a `>` that the grammar reads as one file write, never a shell's)
                        assert not (set(command.text) & SHELL_CHARS), command.text
                    assert parse(command.text, command.where) == command.action, command
    assert not started
    path.unlink()
    return outcome


def test_fuzzed_lesson_files_never_crash_the_parser(tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    outcomes: dict[str, int] = {"lesson": 0, "refused": 0}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(mutated_lesson())
    def parse_one(case: tuple[str, bytes]) -> None:
        outcomes[check_parse(folder, *case)] += 1

    parse_one()
    total = sum(outcomes.values())
    STATS["lesson files fuzzed (parser)"] += total
    note(f"bad input: {total} mutated lesson files parsed: {outcomes['refused']} refused with a LessonError, "
         f"{outcomes['lesson']} still valid lessons (every action in the grammar)")
    assert outcomes["refused"] and outcomes["lesson"], outcomes


# -- mutated lessons through the CLI --------------------------------------------------------------------


def cli_case(rng: random.Random, flag: Path) -> tuple[str, bytes, str]:
    """A mutated lesson 1, 2 or 3 that tries to run `touch FLAG` one way or another: as a
    command (refused when the file is loaded), in prose or a non-executable block (shown,
    never run), or as a namespace name in a show block (parsed, never a path to follow)."""
    name = rng.choice(sorted(LESSONS)[:3])
    lines = LESSONS[name].splitlines(keepends=True)
    how = rng.choice(["command", "command", "prose", "block", "show"])
    if how == "command":  # other damage first, so that it cannot move or delete the attempt
        for _ in range(rng.randint(0, 2)):
            spots = block_lines(lines) or [0]
            # Fences stay where they are: a deleted or moved fence would put the attempt in a
            # block of another kind than block_lines() thinks, and the case would test nothing.
            movable = [k for k, text in enumerate(lines) if not text.startswith("```")]
            i = rng.choice(movable)
            op = rng.choice(["delete", "swap", "wrong", "token"])
            if op == "delete":
                del lines[i]
            elif op == "swap":
                j = rng.choice(movable)
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "wrong":
                lines.insert(rng.choice(spots), rng.choice(PROMPTS[:4]) + rng.choice(WRONG_ARGUMENTS) + "\n")
            else:
                k = rng.choice(spots)
                words = lines[k].split(" ")
                words.insert(rng.randrange(len(words) + 1), rng.choice(TOKENS))
                lines[k] = " ".join(words)
    attempt = rng.choice(BAD_COMMANDS)
    spots = block_lines(lines)
    if how == "command" and not spots:
        how = "command (no console block left)"
    if how.startswith("command"):
        line, at = rng.choice(PROMPTS[:4]) + attempt, rng.choice(spots or prose_lines(lines))
    elif how == "prose":
        line, at = rng.choice(PROMPTS[:4]) + attempt, rng.choice(prose_lines(lines))
    elif how == "block":
        line = f"```{rng.choice(['sh', 'text', 'bash', 'notes'])}\n{rng.choice(PROMPTS[:4])}{attempt}\n```"
        at = max(i for i, text in enumerate(lines) if text.startswith("## ")) + 1
    else:
        line = "```show\n" + rng.choice(["links host; touch {flag}", "links ../../../../../proc/1/ns/net",
                                          "all /proc/1/ns/net", "routes host {flag}"]) + "\n```"
        at = max(i for i, text in enumerate(lines) if text.startswith("## ")) + 1
    lines.insert(at, line.format(flag=flag) + "\n")
    return name, "".join(lines).encode(), how


@needs_root
def test_mutated_lessons_through_the_cli_never_run_anything_outside_the_grammar(tmp_path: Path) -> None:
    seed = master_seed()
    rng = random.Random(seed)
    flag = tmp_path / "flags" / f"PWNED_{seed}"
    flag.parent.mkdir()
    cases = []
    for i in range(CLI_SAMPLES):
        name, raw, how = cli_case(rng, flag)
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        (folder / name).write_bytes(raw)
        cases.append((folder / name, how))

    def run_one(case: tuple[Path, str]) -> tuple[Path, str, object, object]:
        path, how = case
        lab = unique_name("fuzz")
        try:
            result = netstep(lab, "run", str(path), "--yes", "--json", timeout=300)
            reset = netstep(lab, "reset", timeout=120)
            return path, how, result, (reset, leftovers(lab))
        finally:
            destroy_quietly(lab)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_one, cases))
    outcomes: dict[str, int] = {}
    for path, how, result, (reset, left) in results:
        assert "Traceback" not in result.stdout + result.stderr, f"{path} ({how})\n{show(result)}"
        if result.returncode != 0:  # refused with a message, or a check came out otherwise
            failed_check = any(not r.get("ok", True) for r in json_lines(result.stdout))
            assert "netstep:" in result.stderr or failed_check, f"{path} ({how}): no clear message\n{show(result)}"
        if how == "command":
            assert result.returncode != 0 and "netstep:" in result.stderr, f"{path}: not refused\n{show(result)}"
        if how in ("prose", "block"):
            assert result.returncode == 0, f"{path}: prose broke the lesson\n{show(result)}"
        key = f"{how}: {'ran' if result.returncode == 0 else 'refused'}"
        outcomes[key] = outcomes.get(key, 0) + 1
        assert reset.returncode == 0 and not any(left.values()), f"{path} ({how}): {left}\n{show(reset)}"
    assert not flag.exists(), f"a mutated lesson ran a command outside the grammar: {flag} exists"
    assert not list(flag.parent.iterdir())
    STATS["lesson files fuzzed (CLI)"] += len(results)
    note(f"bad input: {len(results)} mutated lessons through `run PATH` (seed {seed}): {outcomes}; "
         "none ran anything outside the grammar")


# -- wrong CLI arguments, unknown names -------------------------------------------------------------------


def cli(*args: str, env: dict | None = None, argv0: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(argv0 or [sys.executable, "-m", "netstep"]), *args], cwd=REPO, env=env or ENV,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@needs_root
@pytest.mark.parametrize("args,words", [
    (["frobnicate"], ["invalid choice"]),
    (["run"], ["lesson"]),
    (["run", "1", "--yes", "--bogus"], ["unrecognized arguments"]),
    (["run", "lesson99", "--yes"], ["There is no lesson 'lesson99'"]),
    (["run", "/nonexistent/05-x.md", "--yes"], ["There is no lesson"]),
    (["check", "lesson99"], ["There is no lesson"]),
    (["--lab", "../x", "next"], ["not a usable lab name"]),
    (["--lab", "Class2", "run", "1", "--yes"], ["not a usable lab name"]),
    (["--lab", "", "reset"], ["not a usable lab name"]),
    (["--lab", "a" * 40, "inspect"], ["not a usable lab name"]),
    (["--internet", "1.2.3.4", "run", "1", "--yes"], ["go with --host"]),
    (["--upstream", "/tmp", "next"], ["go with --host"]),
    (["inspect", "nosuchns"], ["nosuchns"]),
    (["inspect", "../../../../proc/1/ns/net"], ["There is no namespace"]),
    (["shell", "nosuchns"], ["nosuchns"]),
    (["back"], ["Nothing to roll back"]),
    (["rollback"], ["Nothing to roll back"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and isinstance(v[0], str) and len(" ".join(v)) < 40
   else None)
def test_wrong_arguments_and_unknown_names_give_one_clear_message(args: list[str], words: list[str]) -> None:
    if "--lab" in args:
        result = cli(*args)
    else:
        lab = unique_name("args")
        try:
            result = cli("--lab", lab, *args)
        finally:
            netstep(lab, "reset")
            destroy_quietly(lab)
    assert_clean_refusal(result, *words)
    assert len(result.stderr.strip().splitlines()) <= 12, f"more than one message:\n{show(result)}"
    STATS["bad command lines refused"] += 1


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="--host is tried only inside unshare")
@pytest.mark.parametrize("args,words", [
    (["--host", "--internet", "not-an-ip", "run", "1", "--yes"], ["--internet takes an IPv4 address"]),
    (["--host", "--upstream", "/nonexistent/up", "run", "1", "--yes"], ["no such namespace file"]),
    (["--host", "inspect", "nosuchns"], ["nosuchns"]),
])
def test_wrong_host_mode_arguments_inside_unshare(args: list[str], words: list[str]) -> None:
    lab = unique_name("hargs")
    result = cli("--lab", lab, *args, argv0=["unshare", "--net", "--mount", "--propagation", "private", "--",
                                             sys.executable, "-m", "netstep"])
    try:
        assert_clean_refusal(result, *words)
    finally:
        # Its mounts died with its mount namespace; only files can remain.
        shutil.rmtree(os.path.join("/run/netstep/labs", lab), ignore_errors=True)
    STATS["bad command lines refused"] += 1


@needs_root
def test_a_lesson_file_with_a_bad_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "my-lesson.md"
    path.write_text(LESSONS["01-netns.md"])
    lab = unique_name("name")
    try:
        result = cli("--lab", lab, "run", str(path), "--yes")
    finally:
        destroy_quietly(lab)
    assert_clean_refusal(result, "NN-slug.md")


# -- not root, missing tools -------------------------------------------------------------------------------


def _nobody_python() -> tuple[list[str], dict] | None:
    """A Python that the user nobody can run, with netstep and its dependencies importable."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    site = sysconfig.get_paths()["purelib"]
    env = {**ENV, "PYTHONPATH": f"{REPO}:{site}", "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    for python in dict.fromkeys([sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
                                 "/usr/bin/python3"]):
        if not os.path.exists(python):
            continue
        probe = subprocess.run([*drop, python, "-c", "import netstep.cli, rich, pyroute2"], env=env, cwd="/",
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [*drop, python, "-m", "netstep"], env
    return None


NOBODY = _nobody_python() if LESSONS else None


@pytest.mark.skipif(NOBODY is None, reason="no Python that the user nobody can run with netstep importable "
                    "(the venv's may live under /root), or no setpriv")
@pytest.mark.parametrize("args", [["run", "1", "--yes"], ["next"], ["reset"], ["inspect"], ["rollback", "--all"]],
                         ids=" ".join)
def test_not_root_gives_one_clear_message(args: list[str]) -> None:
    """An ordinary user takes the course in a user namespace (tests/test_rootless.py); host
    mode, which changes the machine's own network, is refused in one paragraph."""
    argv0, env = NOBODY
    lab = unique_name("nobody")
    result = subprocess.run([*argv0, "--host", "--lab", lab, *args], env=env, cwd="/", capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert_clean_refusal(result, "host mode changes this machine's own network and needs root")
    assert not os.path.exists(os.path.join("/run/netstep/labs", lab))
    STATS["bad command lines refused"] += 1


TOOLS = ("ip", "iptables", "iptables-save", "nsenter", "conntrack")


@needs_root
@pytest.mark.parametrize("missing", ["conntrack", "iptables", "nsenter", "all"])
def test_missing_tools_give_one_clear_message(tmp_path: Path, missing: str) -> None:
    """PATH holds the tools netstep needs but `missing` (and Python's own folder). A
    command that needs the tool refuses, naming it and its package, before building
    anything; one that does not (only `shell` enters namespaces with nsenter) works."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if missing != "all":
        for tool in TOOLS:
            if tool != missing and shutil.which(tool):
                (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**ENV, "PATH": f"{bin_dir}:{Path(sys.executable).parent}"}
    # netstep also looks in the sbin folders (an ordinary user's PATH has none): in a mount
    # namespace of the command's own, the missing tools are hidden there too, as on a machine
    # without them (/dev/null bound over each is no executable).
    hidden = [os.path.join(folder, tool) for tool in (TOOLS if missing == "all" else (missing,))
              for folder in (*SBIN, "/usr/local/bin", "/usr/bin", "/bin") if os.path.exists(os.path.join(folder, tool))]
    hide = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            f'for f in "$@"; do [ "$f" = -- ] && break; {shutil.which("mount")} --bind /dev/null "$f"; shift; done; '
            'shift; exec "$@"', "hide", *hidden, "--", sys.executable, "-m", "netstep"]
    hide[0] = shutil.which("unshare") or "unshare"
    lab = unique_name("tools")
    needs = {  # command -> the tools it refuses to run without
        ("run", "1", "--yes"): {"conntrack", "iptables", "all"},
        ("reset",): {"iptables", "all"},  # (a host-mode lab's rules are removed with iptables)
        ("shell",): {"nsenter", "all"},
    }
    try:
        for args, refused in needs.items():
            result = cli("--lab", lab, *args, env=env, argv0=hide)
            if missing not in refused:
                if args != ("shell",):  # (a shell with every tool would wait for its input)
                    assert result.returncode == 0, show(result)
                continue
            expected = {"all": "iptables" if args != ("shell",) else "nsenter"}.get(missing, missing)
            assert_clean_refusal(result, "needs", expected, "apt-get install")
            if args[0] == "run":
                assert not os.path.exists(os.path.join("/run/netstep/labs", lab)), "a lab was built without its tools"
            STATS["bad command lines refused"] += 1
    finally:
        destroy_quietly(lab)


