"""A translated lesson is the English lesson in other words: the same console, check,
solution, grade and show blocks in the same order, so the two can never drift; and
`--lang zh list` lists the translated titles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from netstep.course.lessons import FENCE_RE, MODES, parse_lesson

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
ENGLISH = sorted(LESSONS.glob("[0-9][0-9]-*.md"))
TRANSLATED = sorted(p for p in LESSONS.glob("*/[0-9][0-9]-*.md") if p.parent.name != "challenges")
SAME = ("console", "check", "solution", "grade", "show")  # hint and notes blocks are prose, translated
# English lessons whose Chinese translation is still to be written (issue 22). Each one
# listed here is a gap: translate it and take it off, and the test keeps it in step.
NOT_YET_IN_CHINESE: set[str] = set()


def blocks(path: Path, kinds: tuple[str, ...] = SAME) -> list[tuple[str, str]]:
    """(kind, text) of each block that must be the same in every language, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE_RE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == fence.group(1))
            if fence.group(2) in kinds:
                found.append((fence.group(2), "\n".join(lines[i + 1:end]).strip()))
            i = end
        i += 1
    return found


def unlined(items: list) -> list:
    """Checks and grade lines without the line each is on (the prose around them differs)."""
    return [replace(item, line=0) if hasattr(item, "line") else item for item in items]


def test_every_english_lesson_has_a_chinese_one():
    chinese = {p.name for p in (LESSONS / "zh").glob("*.md")}
    missing = {p.name for p in ENGLISH} - chinese
    assert missing == NOT_YET_IN_CHINESE, "lessons/zh/ needs a translation of each English lesson " \
        f"(missing: {sorted(missing)}; NOT_YET_IN_CHINESE lists {sorted(NOT_YET_IN_CHINESE)})"


@pytest.mark.parametrize("path", TRANSLATED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_translation_has_the_english_lessons_blocks_in_order(path: Path):
    english = LESSONS / path.name
    assert english.exists(), f"{path} translates no English lesson"
    assert blocks(path) == blocks(english)
    for mode in MODES:
        theirs, ours = parse_lesson(english, mode), parse_lesson(path, mode)
        assert len(ours.steps) == len(theirs.steps)
        for a, b in zip(ours.steps, theirs.steps, strict=True):
            assert [c.text for c in a.commands] == [c.text for c in b.commands]
            assert unlined(a.checks) == unlined(b.checks) and a.shows == b.shows
            assert unlined(a.grade) == unlined(b.grade)
        assert (ours.exercise is None) == (theirs.exercise is None)
        if ours.exercise and theirs.exercise:
            assert [c.text for c in ours.exercise.solution] == [c.text for c in theirs.exercise.solution]
            assert unlined(ours.exercise.checks) == unlined(theirs.exercise.checks)
            assert len(ours.exercise.hints) == len(theirs.exercise.hints)


def test_a_translation_is_in_its_language():
    for path in TRANSLATED:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# 第 "), f"{path}: a Chinese lesson's title reads 第 N 课：..."
        assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) > 500, f"{path} is hardly Chinese"


@pytest.mark.parametrize("env", [{"LANG": "zh_CN.UTF-8"}, {"LANG": "en_US.UTF-8", "NETSTEP_ARGS": "--lang zh"}])
def test_list_shows_the_chinese_titles(env):
    environ = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    environ.update(env)
    extra = env.get("NETSTEP_ARGS", "").split()
    shown = subprocess.run([sys.executable, "-m", "netstep", *extra, "list"], capture_output=True, text=True,
                           env=environ, cwd=ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "网络命名空间，一套独立的网络栈" in shown.stdout and "标题" in shown.stdout
    assert "A network namespace is a network stack of its own" not in shown.stdout


def test_chinese_lines_up_at_80_columns_in_a_pty():
    """rich measures a Chinese character as two columns: the course table's borders line up."""
    import pty

    from rich.cells import cell_len

    environ = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    environ.update(COLUMNS="80", LINES="40", TERM="xterm", NO_COLOR="1")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "netstep", "--lang", "zh", "list"], stdin=follower,
                                stdout=follower, stderr=follower, env=environ, cwd=ROOT)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode().replace("\r", ""))  # (bold stays with NO_COLOR)
    lines = [line for line in shown.splitlines() if line.strip()]
    table = [line.rstrip() for line in lines if line[:1] in "┏┃┡│└"]
    assert any("网络命名空间" in line for line in table)
    assert len(table) > 8 and {cell_len(line) for line in table} == {cell_len(table[0])}
    assert all(cell_len(line) <= 80 for line in lines)
    column = [i for i, ch in enumerate(table[0]) if ch == "┳"]
    for line in table:  # each border at the same column of the screen, wide characters counted twice
        positions = [cell_len(line[:i]) for i, ch in enumerate(line) if ch in "┳┃╇│┴"][: len(column) + 2]
        assert positions[1:-1] == [cell_len(table[0][:i]) for i in column] or line[:1] in "┏┡└"


# What may stay in English in a Chinese run (issue 22): commands, names, the kernel's and
# the tools' own words (a route as `ip route` prints it, errno texts, iptables' chains),
# each with its Chinese explanation beside it. Any other ASCII word of 4+ letters is prose
# that missed the catalog or the lesson's translation.
KEPT_IN_ENGLISH = {
    "host", "netns", "veth", "ceth", "ping", "iptables", "nsenter", "netstep", "shell", "exit", "exec", "COMMAND",
    "proto", "kernel", "scope", "link", "linkdown", "loopback", "peer", "DOWN", "filter", "upstream", "default",
    "INPUT", "OUTPUT", "FORWARD", "ROOT", "Linux", "netfilter", "network", "namespace", "route",
    "sysctl", "Network", "unreachable", "echo", "reply",  # ("Network is unreachable": the kernel's; echo reply: ping's)
    "Destination", "Unreachable", "connection", "refused",  # (ping's "Destination Net Unreachable", quoted errors)
    "inspect", "trace", "start", "next", "rollback", "challenge", "chain", "gateway", "Docker",  # commands, names
}


def _screen_words(shown: str) -> list[str]:
    """The English words of a run's prose: command lines dropped, then tokens with digits,
    dots, slashes, dashes, underscores, @ or = (addresses, names, sysctl keys, reason codes)."""
    lines = [line for line in shown.splitlines() if not re.match(r"\s*│?\s*[\w-]+# ", line)]
    tokens = re.split(r"[\s│╭╮╰╯─┃━（）()，。：；“”、:;,!?\[\]]+", "\n".join(lines))
    return [t for t in tokens if re.fullmatch(r"[A-Za-z]{4,}", t)]


def _kept(word: str) -> bool:
    """A word that may stay English, or a piece of one that rich broke at the screen's edge
    (Chinese wraps between any two characters, so an English word in it may be cut too)."""
    return any(word == kept or (kept.startswith(word) or kept.endswith(word)) for kept in KEPT_IN_ENGLISH)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs lessons on a lab as root")
def test_a_chinese_run_shows_no_english_prose_at_80_columns(cli_lab: str):
    from support import run_on_pty

    shown = ""
    for lesson in ("lesson1", "lesson2"):
        code, output = run_on_pty([sys.executable, "-m", "netstep", "--lab", cli_lab, "--lang", "zh", "run", lesson,
                                   "--yes"], columns=80, rows=40, timeout=300)
        shown += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace").replace("\r", ""))
        assert code == 0, shown[-2000:]
    assert "第 2 课" in shown and "所有检查的结果都符合预期" in shown
    english = sorted({word for word in _screen_words(shown) if not _kept(word)})
    assert not english, f"English prose in a Chinese run: {english}"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs lessons on a lab as root")
def test_a_chinese_tutor_shows_no_english_prose() -> None:
    """What a notebook shows (each Tutor result drawn by rich, as the notebook's text form):
    a step to verify with nothing typed, hints, a step, the status, the score, an
    exercise's solution, the challenge list, a challenge begun, verified, hinted, solved,
    a rollback and a lesson's checks."""
    from rich.console import Console
    from support import unique_name

    from netstep import i18n
    from netstep.core.lab import Lab
    from netstep.present import views
    from netstep.tutor import Tutor

    lab = unique_name("zht")
    console = Console(width=80, color_system=None, record=True)
    spoken = i18n.language()
    try:
        with i18n.speaking(spoken):  # Tutor(lang=) sets the process's language: for this test only
            t = Tutor(lab, lang="zh")
            for call in (lambda: t.start(5), t.verify, t.hint, t.step, t.status, t.score,
                         lambda: t.solution("exercise5"), t.challenge, lambda: t.challenge("no-default"), t.verify,
                         t.hint, t.solution, t.rollback, lambda: t.check(5)):
                console.print(views.renderable(call()))
            t.reset()
    finally:
        Lab(lab).destroy()
    assert i18n.language() == spoken  # (the tests after this one speak as they did)
    shown = console.export_text()
    assert "挑战 no-default" in shown and "第 5 课" in shown, shown[-2000:]
    english = sorted({word for word in _screen_words(shown) if not _kept(word)})
    assert not english, f"English prose in a Chinese notebook: {english}"


# Challenges translate as lessons do: lessons/challenges/zh/NAME.md, the same break, check,
# solution and grade blocks as the English one's, the story, prose, hints and explanation
# in Chinese; Challenges.load picks it when the language is zh.
CHALLENGES = LESSONS / "challenges"
TRANSLATED_CHALLENGES = sorted(CHALLENGES.glob("*/[0-9][0-9]-*.md"))
CHALLENGE_SAME = ("setup", "break", "check", "solution", "grade")


@pytest.mark.parametrize("path", TRANSLATED_CHALLENGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_translated_challenge_has_the_english_ones_blocks_in_order(path: Path):
    from netstep.course.challenges import parse_challenge

    english = CHALLENGES / path.name
    assert english.exists(), f"{path} translates no English challenge"
    assert blocks(path, CHALLENGE_SAME) == blocks(english, CHALLENGE_SAME)
    ours, theirs = parse_challenge(path), parse_challenge(english)
    assert (ours.name, ours.lesson) == (theirs.name, theirs.lesson)
    assert [c.text for c in ours.breaks] == [c.text for c in theirs.breaks]
    assert [c.text for c in ours.solution] == [c.text for c in theirs.solution]
    assert unlined(ours.checks) == unlined(theirs.checks) and unlined(ours.grade) == unlined(theirs.grade)
    assert len(ours.hints) == len(theirs.hints)
    for text in (ours.story, ours.prose, ours.explain, *ours.hints):
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{path}: not translated: {text[:60]}"


def test_challenges_load_in_the_chosen_language():
    """Each challenge in Chinese where it is translated, in English where not; English by default."""
    from netstep import i18n
    from netstep.course.challenges import Challenges
    from netstep.course.course import Course

    assert TRANSLATED_CHALLENGES, "no Chinese challenge to load"
    try:
        i18n.use("zh")
        chinese = {c.name: c for c in Challenges.load(Course.load().lessons).items}
        i18n.use("en")
        english = {c.name: c for c in Challenges.load(Course.load().lessons).items}
    finally:
        i18n.use()
    assert chinese.keys() == english.keys()
    translated = {p.name for p in TRANSLATED_CHALLENGES}
    for name, challenge in chinese.items():
        was = english[name]
        assert Path(was.path).parent == CHALLENGES
        if Path(was.path).name in translated:
            assert Path(challenge.path) == CHALLENGES / "zh" / Path(was.path).name
            assert challenge.story != was.story
            assert [c.text for c in challenge.breaks] == [c.text for c in was.breaks]
        else:
            assert challenge.path == was.path


# One line of each kind the grammar refuses (netstep/course/commands.py), with where it is
# typed: a student's mistake is told in the student's language, as a whole sentence.
REFUSED = [
    "ping 8.8.8.8", "ip link set veth0 up; rm -rf /", "ip link set lo up\x07", "ip link set 'veth0 up", "", "sudo",
    "echo 'nameserver x' > /etc/netns/netns0/resolv.conf", "ip", "ip monitor", "ip netns", "ip netns list",
    "ip netns exec netns0", "ip netns add host", "nsenter -t 1 -n ip link set lo up",
    "nsenter --net=/proc/1/ns/net ip link set lo up", "nsenter --net=/var/run/netns/netns0", "ip link",
    "ip link show", "ip link add veth0 type vxlan", "ip link set veth0 bogus", "ip link delete",
    "ip link set veth0 mtu 20",
    "ip link add averyveryverylongname type bridge", "bridge fdb add 02:00:00:00:00:01 dev veth0",
    "bridge link set dev veth0 hairpin maybe", "ip addr add 172.18.0.300/16 dev veth0",
    "ip addr add 172.18.0.10 dev veth0",
    "ip addr add 172.18.0.10/16 veth0", "ip route", "ip route add 172.18.0.1/16 dev veth0",
    "ip route add default via 172.18.0.1 metric 5", "ip route add default via 172.18.0", "ip route add 10.0.0.0/8",
    "ip route delete 172.18.0.0/16 proto bogus", "ip route delete 172.18.0.0/16 scope nowhere",
    "iptables -t broken -A FORWARD -j ACCEPT", "iptables", "iptables -N", "iptables -P FORWARD REJECT", "iptables -A",
    "iptables -L", "iptables -N 1chain", "iptables -A FORWARD", "iptables -A FORWARD --foo bar -j ACCEPT",
    "iptables -A FORWARD -s", "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN",
    "iptables -A FORWARD -s @x -j DROP",
    "iptables -A FORWARD -s 10.0.0.0/8", "sysctl -a", "sysctl -w kernel.panic=1", "sysctl -w net.ipv4.ip_forward=a,b",
    "python3 -c print", "python3 -m http.server --bind 172.18.0.999 5000",
    "python3 -m http.server --bind 172.18.0.10 70000", "fuser 6000/tcp", "fuser -k 70000/tcp",
    "dnsmasq --no-resolv", "dnsmasq --listen-address=10.0.2.2", "dnsmasq --no-resolv --listen-address=10.0.2.300",
    "dnsmasq --no-resolv --listen-address=10.0.2.2 --conf-file=/etc/x", "mkdir /etc/netns/netns0",
]
# The grammar's own notation in a usage line (`ip link set NAME up|down|...`): typed as shown,
# or standing for what is typed, so it stays as it is in every language.
USAGE_WORDS = {
    "NAME", "PEER", "BRIDGE", "ADDRESS", "GATEWAY", "DEST", "CHAIN", "TARGET", "PORT", "type", "bridge", "delete",
    "hairpin", "addr", "mangle", "dnsmasq", "fuser", "mkdir", "ACCEPT", "DROP", "MASQUERADE", "DNAT", "RETURN",
    "Python",  # (a name)
}


def _shlex_says(line: str) -> str:
    """Python's own words for a line shlex cannot split (No closing quotation), or ""."""
    import shlex

    try:
        shlex.split(line)
    except ValueError as exc:
        return str(exc)
    return ""


def test_the_grammar_refuses_in_chinese_and_in_english_as_before():
    from netstep import i18n
    from netstep.course.commands import parse

    spoken, untranslated = i18n.language(), {}
    with i18n.speaking("zh"):  # (back to the language before, whatever happens)
        for line in REFUSED:
            with pytest.raises(ValueError) as refused:
                parse(line, "netns0" if line.startswith("ip netns add") else "host")
            message = str(refused.value)
            typed = set(re.findall(r"[A-Za-z]+", line + _shlex_says(line)))  # (shlex's words, as strerror's)
            english = [w for w in _screen_words(message) if not _kept(w) and w not in typed and w not in USAGE_WORDS]
            if english or not any("\u4e00" <= ch <= "\u9fff" for ch in message):
                untranslated[line] = message
        with pytest.raises(ValueError, match="命名空间要在 host 上添加和删除"):
            parse("ip netns add netns1", "netns0")
    assert i18n.language() == spoken
    assert not untranslated, f"English in the grammar's Chinese errors: {untranslated}"
    with i18n.speaking("en"):  # the English sentences are the ones tests and lessons have always read
        for line, said in [("ping 8.8.8.8", "unknown command 'ping': lessons can use ip, bridge"),
                           ("ip monitor", "'ip monitor' is not supported: use ip netns, ip link, ip addr or ip route"),
                           ("iptables -A FORWARD -s", "iptables option '-s' needs a value"),
                           ("iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN", "needs 2 values"),
                           ("ip addr add 172.18.0.10 dev veth0", "'172.18.0.10' needs a prefix length, such as "
                                                                 "172.18.0.10/16"),
                           ("ip link set veth0 mtu 20", "'20' is not an MTU netstep sets: a number of bytes from 68"),
                           ("fuser -k 70000/tcp", "'70000' is not a port number: expected: fuser -k PORT/tcp or "
                                                  "PORT/udp (stops the lab's servers on PORT in the namespace)")]:
            with pytest.raises(ValueError) as refused:
                parse(line, "host")
            assert said in str(refused.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="changes a lab's kernel state as root")
def test_a_change_the_kernel_refuses_is_told_in_chinese(lab):
    """The ops layer's sentence around the kernel's own error (File exists: its words, as
    `ip` prints them) is in the student's language."""
    from netstep import i18n
    from netstep.course.commands import parse
    from netstep.errors import NetstepError
    from netstep.ops import apply as executor

    with i18n.speaking("zh"):
        with pytest.raises(NetstepError) as refused:
            executor.apply(lab, parse("ip route add 10.0.2.0/24 dev eth0", "host"))
        exists = str(refused.value)
        with pytest.raises(NetstepError) as refused:
            executor.apply(lab, parse("ip link set veth9 up", "host"))
        missing = str(refused.value)
    assert "在 host 上执行 `ip route add 10.0.2.0/24 dev eth0` 失败：File exists。" in exists, exists
    assert "已经有一条到 10.0.2.0/24 的路由（10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15）" in exists
    assert missing == "host 里没有设备“veth9”。", missing
    for message in (exists, missing):  # (commands in backquotes are typed, File exists is the kernel's)
        prose = re.sub(r"`[^`]*`", "", message)
        assert not [w for w in _screen_words(prose) if not _kept(w) and w not in ("File", "exists")], message
    with i18n.speaking("en"), pytest.raises(NetstepError, match="There is no device 'veth9' in host"):
        executor.apply(lab, parse("ip link set veth9 up", "host"))


# What a whole Chinese run may still show in English besides KEPT_IN_ENGLISH: iptables'
# and conntrack's own words, the names of products and tools the lessons mention, and the
# kernel's messages a lesson quotes (each is also explained in Chinese beside it).
COURSE_TERMS = {
    "ACCEPT", "ASSURED", "DELAY", "DNAT", "DOCKER", "DROP", "ESTABLISHED", "LISTEN", "LOCAL", "MASQUERADE",
    "NAME", "ORIGINAL", "OTHER", "POSTROUTING", "PREROUTING", "REACHABLE", "RELATED", "RETURN", "SNAT", "STALE",
    "TCPMSS", "UNREPLIED", "NXDOMAIN", "FragFails", "ICMP", "icmp", "DHCP", "PPPoE", "CentOS", "Ubuntu",
    "Kubernetes", "addrtype", "bind", "bridge", "clamping", "conntrack", "container", "crictl", "curl", "dnsmasq",
    "docker", "firewalld", "fuser", "hairpin", "http", "identify", "inode", "internet", "learned", "lladdr",
    "localhost", "lsns", "mangle", "martian", "master", "metric", "modprobe", "nameserver", "neigh", "none",
    "pause", "permanent", "policy", "python", "reset", "sidecar", "socket", "stub", "sudo",
}
KERNEL_PHRASES = (r"martian source \S+ from \S+, on dev \S+", "fragmentation needed", "Path MTU Discovery",
                  "Destination Host Unreachable", "Destination Net Unreachable", "Time to live exceeded",
                  "don't fragment", "port unreachable")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs lessons on a lab as root")
def test_the_whole_course_in_chinese_shows_no_english_prose(cli_lab: str) -> None:
    """`run all --yes --lang zh`: every lesson's prose, check, verdict, diff and table, with
    nothing in English but commands, code, the kernel's own words and the terms above."""
    run = subprocess.run([sys.executable, "-m", "netstep", "--lab", cli_lab, "--lang", "zh", "run", "all", "--yes"],
                         capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "2000"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "第 13 课" in run.stdout and "所有检查的结果都符合预期" in run.stdout
    shown = re.sub(r"`[^`\n]*`", "", run.stdout)  # code, as the lesson quotes it
    for text in (*(re.escape(os.strerror(e)) for e in range(1, 134)), *KERNEL_PHRASES):
        shown = re.sub(text, "", shown)
    english = sorted({w for w in _screen_words(shown) if not _kept(w) and w not in COURSE_TERMS})
    assert not english, f"English prose in the Chinese course: {english}"
