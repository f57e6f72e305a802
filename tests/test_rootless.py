"""An ordinary user takes the course in a user namespace of their own (netstep.core.backend).

The doctor tests read a fake /proc/sys and need nothing. The others make Unix users with
useradd (removed again, their processes ended by pid, even when a test fails) and run
`python -m netstep` as them with runuser: the test venv's interpreter lives under /root,
so they run the system's python3 of the same version on this checkout and the venv's
site-packages, which any user can read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from support import (
    REPO,
    SYSTEM_PYTHON,
    cell_texts,
    machine_network_state,
    needs_root,
    needs_users,
    unique_name,
    wait_for_screen,
)

from netstep.course.course import Course
from netstep.doctor import user_namespaces

# -- doctor, on a fake /proc/sys ------------------------------------------------------------


def fake_proc_sys(folder: Path, values: dict[str, str]) -> str:
    for key, value in values.items():
        path = folder.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return str(folder)


@pytest.mark.parametrize(("values", "says"), [
    ({"user.max_user_namespaces": "0"}, ["user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces=15000"]),
    ({"user.max_user_namespaces": "63000", "kernel.unprivileged_userns_clone": "0"},
     ["kernel.unprivileged_userns_clone = 0", "sysctl -w kernel.unprivileged_userns_clone=1"]),
    ({"user.max_user_namespaces": "63000", "kernel.apparmor_restrict_unprivileged_userns": "1"},
     ["Ubuntu 24.04", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0", "userns,",
      "apparmor_parser -r /etc/apparmor.d/netstep-unshare", "not a symlink", "every Python program"]),
])
def test_doctor_names_what_forbids_user_namespaces_and_the_fix(tmp_path: Path, values: dict[str, str],
                                                               says: list[str]) -> None:
    found = user_namespaces(fake_proc_sys(tmp_path, values))
    assert len(found) == 1 and found[0][0] is False, found
    for words in says:
        assert words in found[0][1]
    if "kernel.apparmor_restrict_unprivileged_userns" in values:  # the profile names the real binary
        assert os.path.realpath(shutil.which("unshare") or "/usr/bin/unshare") in found[0][1]


def test_doctor_says_user_namespaces_are_allowed(tmp_path: Path) -> None:
    allowed = {"user.max_user_namespaces": "63000", "kernel.unprivileged_userns_clone": "1",
               "kernel.apparmor_restrict_unprivileged_userns": "0"}
    assert user_namespaces(fake_proc_sys(tmp_path, allowed)) == [
        (True, "unprivileged user namespaces are allowed (user.max_user_namespaces = 63000)")]
    both = {"user.max_user_namespaces": "0", "kernel.unprivileged_userns_clone": "0"}
    assert [ok for ok, _ in user_namespaces(fake_proc_sys(tmp_path / "b", both))] == [False, False]


# -- as ordinary users ----------------------------------------------------------------------

def checks_and_diffs(stdout: str) -> list[dict]:
    """The JSON lines of a run, without what differs between two runs of the same course:
    times, and the counters of the evidence (other packets, IPv6's among them, are counted too)."""
    out = []
    for line in stdout.splitlines():
        item = json.loads(line)
        item.pop("ms", None)
        item.pop("evidence", None)
        out.append(item)
    return out


@needs_root
@needs_users
def test_whole_course_as_an_ordinary_user_matches_root(make_user, tmp_path: Path) -> None:
    before = machine_network_state()
    user = make_user()
    ran = user.netstep("run", "all", "--yes", "--json")
    assert ran.returncode == 0, ran.stderr
    theirs = checks_and_diffs(ran.stdout)
    assert theirs and all(item["ok"] for item in theirs if "ok" in item)
    lab = unique_name("rootless")
    root = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "run", "all", "--yes", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], cwd=REPO, capture_output=True)
    assert root.returncode == 0, root.stderr
    assert theirs == checks_and_diffs(root.stdout), "an ordinary user's course differs from root's"

    # The lab persists between commands; trace says in one line what needs root.
    assert user.netstep("back").returncode == 0
    inspect = user.netstep("inspect", "--all", "--json")
    assert inspect.returncode == 0 and "netns0" in inspect.stdout
    traced = user.netstep("trace", "netns0", "172.18.0.99")
    assert "drop reasons are not available: they need root" in traced.stdout
    refused = user.netstep("--host", "inspect")
    assert refused.returncode == 1
    assert "host mode changes this machine's own network and needs root" in refused.stderr

    # Reset leaves nothing: no process of the user, no record.
    holder = user.holder()
    reset = user.netstep("reset")
    assert reset.returncode == 0, reset.stderr
    assert user.processes_end() and not os.path.exists(f"/proc/{holder}")
    assert os.listdir(user.records) == []
    assert machine_network_state() == before


@needs_root
@needs_users
def test_two_users_each_with_a_lab_named_default_stay_apart(make_user) -> None:
    alice, bob = make_user(), make_user()
    runs = [subprocess.Popen(["runuser", "-u", u.name, "--", "env", f"PYTHONPATH={REPO}:"
                              f"{sysconfig.get_paths()['purelib']}", SYSTEM_PYTHON, "-m", "netstep", "run", "lesson2",
                              "--yes", "--json"], cwd="/tmp", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for u in (alice, bob)]
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert all(item["ok"] for item in checks_and_diffs(out) if "ok" in item)
    a_holder = alice.holder()
    assert os.stat(f"{alice.records}").st_mode & 0o777 == 0o700
    assert os.stat(f"{alice.records}/default.holder").st_mode & 0o777 == 0o600

    # Bob cannot enter Alice's holder, read her records or her lab's files, or signal it.
    entered = bob.run("nsenter", "-t", str(a_holder), "-U", "-m", "-n", "--preserve-credentials", "true")
    assert entered.returncode != 0
    for path in (f"{alice.records}/default.holder", f"/proc/{a_holder}/root/run/netstep/labs/default/journal.json"):
        read = bob.run("cat", path)
        assert read.returncode != 0 and "Permission denied" in read.stderr, read
    assert bob.run("kill", "-9", str(a_holder)).returncode != 0

    # Bob's reset of `default` is his own lab's.
    assert bob.netstep("reset").returncode == 0
    assert bob.processes_end()
    still = alice.netstep("inspect", "netns0", "--json")
    assert still.returncode == 0 and "ceth0" in still.stdout

    # A kill -9 of Alice's holder loses only her lab; reset clears what is left, and a new lab starts.
    os.kill(a_holder, signal.SIGKILL)
    for _ in range(200):
        if not os.path.exists(f"/proc/{a_holder}/ns"):
            break
        time.sleep(0.01)
    assert alice.netstep("reset").returncode == 0
    assert alice.processes_end() and os.listdir(alice.records) == []
    again = alice.netstep("run", "lesson1", "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert alice.netstep("reset").returncode == 0


@needs_root
@needs_users
def test_doctor_as_an_ordinary_user_tries_what_a_lab_needs_in_a_user_namespace(make_user) -> None:
    """What the host kernel must give a class's users (veth, bridge, nf_nat, nf_conntrack),
    tried where their labs live: in a user namespace of their own."""
    user = make_user()
    doctor = user.netstep("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "✔ unprivileged user namespaces are allowed" in doctor.stdout
    assert "✔ a user namespace of your own: a scratch namespace, pinned by a bind mount, with a veth pair, an " \
        "address, a bridge, an iptables rule and a MASQUERADE worked (and is gone)" in doctor.stdout
    assert user.processes_end()


# What an ordinary user's nbclient runs: a notebook, in an ordinary Jupyter kernel of their own.
EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
"""


@needs_root
@needs_users
def test_a_lesson_notebook_as_an_ordinary_user(make_user) -> None:
    """Tutor() and %%netstep in an ordinary user's own Jupyter kernel (multi-threaded from its
    start, so the lab's work runs in a process of its own that joined the lab: netstep.worker):
    lesson 5 filled in by a student who types every step and predicts every check right."""
    import nbformat
    from support import filled_notebook

    before = machine_network_state()
    user = make_user()
    book = Path(user.home) / "05-gateway.ipynb"
    book.write_text(filled_notebook(REPO / "notebooks" / "05-gateway.ipynb", right=True, typed=True))
    os.chown(book, user.uid, -1)
    ran = user.run(SYSTEM_PYTHON, "-c", EXECUTE, str(book), f"{user.home}/out.ipynb", user.home, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    nb = nbformat.read(f"{user.home}/out.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    texts = cell_texts(nb)
    assert "RemoteTutor" not in "".join(texts.values())
    total = sum(len(s.checks) for s in Course.load().find("gateway").steps)
    assert f"predictions: {total} of {total} right (so far)" in texts["t.score()"], texts["t.score()"]
    verdicts = [text for source, text in texts.items() if source.startswith('t.verify("5.')]
    assert verdicts and all("Counted as done" in v and "✘" not in v for v in verdicts), verdicts
    assert not [s for s, text in texts.items() if "✘" in text], "a check came out other than expected"
    assert "✔ exercise5" in texts['t.solution("exercise5")']
    scratch = next(text for source, text in texts.items() if source.startswith('ipr = t.ipr("host")'))
    assert "scratch1" in scratch, scratch  # pyroute2 on a netlink socket handed over from the lab
    # The last cell's t.reset() left nothing: no process of the user, no record; the machine untouched.
    assert user.processes_end() and os.listdir(user.records) == []
    assert machine_network_state() == before


TMUX = shutil.which("tmux")


@needs_root
@needs_users
@pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")
def test_the_demo_in_tmux_as_an_ordinary_user(make_user) -> None:
    """The demo (Textual, threads of its own: python -m netstep joined the lab before them)
    in the user's own tmux at 120x36: steps applied and rolled back by keys, the lab's
    picture drawn, --rollback-on-exit, then reset leaves nothing."""
    before = machine_network_state()
    user = make_user()
    session = "netstep-demo"
    done = f"{user.home}/rc"
    python = f"PYTHONPATH={REPO}:{sysconfig.get_paths()['purelib']} HOME={user.home} {SYSTEM_PYTHON}"
    command = (f"cd /tmp && env -u COLUMNS -u LINES NO_COLOR=1 TERM=xterm-256color {python} -m netstep demo "
               f"--rollback-on-exit; echo $? > {done}; sleep 30")
    total = len(Course.load().steps)

    def tmux(*args: str) -> str:
        return user.run(TMUX, *args, timeout=30).stdout

    def wait_for(text: str) -> str:
        return wait_for_screen(lambda: tmux("capture-pane", "-p", "-t", session), text, 120.0)

    try:
        tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", command)
        wait_for("Next: step 1.1")
        assert "upstream · router" in wait_for("Quit")
        for n in (1, 2, 3):
            tmux("send-keys", "-t", session, "Right")
            wait_for(f"{n}/{total} steps applied")
        assert "netns0" in wait_for("lo DOWN")  # the picture: netns0 exists, its loopback is down
        tmux("send-keys", "-t", session, "Left")
        assert f"2/{total} steps applied" in wait_for("Rolled back")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 60
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(done) as f:
            assert f.read().strip() == "0"
        kept = user.netstep("inspect", "--all", "--json")  # the holder kept the lab, rolled back to the start
        assert kept.returncode == 0 and '"host"' in kept.stdout and "netns0" not in kept.stdout, kept
    finally:
        tmux("kill-server")
        shutil.rmtree(f"/tmp/tmux-{user.uid}", ignore_errors=True)
    assert user.netstep("reset").returncode == 0
    assert user.processes_end() and os.listdir(user.records) == []
    assert machine_network_state() == before


def test_a_challenge_as_an_ordinary_user(make_user) -> None:
    """`challenge` needs no root: the break, verify, hint and solution in the user's own lab."""
    user = make_user()
    listed = user.netstep("challenge")
    assert listed.returncode == 0 and "forward-off" in listed.stdout, listed.stderr
    begun = user.netstep("challenge", "forward-off")
    assert begun.returncode == 0, begun.stderr
    failed = user.netstep("verify")
    assert failed.returncode == 1 and "challenge:forward-off" in failed.stdout, failed.stdout + failed.stderr
    solved = user.netstep("solution")
    assert solved.returncode == 0 and "What was broken" in solved.stdout, solved.stdout + solved.stderr
    assert user.netstep("reset").returncode == 0 and user.processes_end()


INTERRUPTED = """
import os, signal, sys, threading
from netstep.tutor import RemoteTutor, Tutor
t = Tutor("intr")
assert isinstance(t, RemoteTutor), type(t)
t.start("veth")
first = t.engine.position
# Jupyter's interrupt button sends SIGINT to the kernel while the step is under way.
threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    t.step()
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
after = t.step()
print("refs", first, t.engine.position, after.step.ref)
t.close()
"""


@needs_root
@needs_users
def test_an_interrupted_notebook_call_finishes_its_step_and_the_next_call_goes_on(make_user) -> None:
    """The interrupt button during `t.step()` in an ordinary user's notebook: the call stops
    waiting, the step finishes in the lab's own process, and the next `t.step()` applies the
    step after it; the lab then holds exactly those two steps, as the command line reads them
    (`back` twice returns to the lesson's start) and `reset` leaves nothing."""
    user = make_user()
    ran = user.run(SYSTEM_PYTHON, "-c", INTERRUPTED, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "interrupted" in ran.stdout.splitlines(), ran.stdout  # the interrupt came during the step
    words = next(line for line in ran.stdout.splitlines() if line.startswith("refs ")).split()
    first, position, ref = int(words[1]), int(words[2]), words[3]
    steps = Course.load().find("veth").steps
    assert position == first + 2 and ref == steps[1].ref, ran.stdout
    for step in reversed(steps[:2]):
        back = user.netstep("--lab", "intr", "back")
        assert back.returncode == 0 and step.title in back.stdout, back.stdout + back.stderr
    again = user.netstep("--lab", "intr", "next")  # from the lesson's start: its first step
    assert again.returncode == 0 and f"step {steps[0].ref}: {steps[0].title}" in again.stdout, again.stdout
    assert user.netstep("--lab", "intr", "reset").returncode == 0 and user.processes_end()


WHEELS = REPO / ".venv" / "wheels"  # netstep's dependencies and its build backend, kept by quickstart.sh setup-tests
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"  # Debian's PATH for an ordinary user: no /usr/sbin


@needs_root
@needs_users
@pytest.mark.skipif(shutil.which("pipx") is None or not WHEELS.is_dir(),
                    reason="needs pipx and .venv/wheels (./quickstart.sh setup-tests)")
def test_the_readmes_path_for_an_ordinary_user_pipx_install_then_the_course(make_user, tmp_path: Path) -> None:
    """README's "As an ordinary user": `pipx install .` in a clone, as that user, then
    `netstep doctor` and a lesson that needs iptables, from ~/.local/bin with Debian's PATH
    for an ordinary user (iptables lives in /usr/sbin, which it leaves out). The install
    runs in a network namespace with no network: the wheels are quickstart's, so the test
    reaches no index."""
    user = make_user()
    source = Path(user.home) / "netstep"
    subprocess.run(["git", "clone", "-q", str(REPO), str(source)], check=True, capture_output=True)
    subprocess.run(["chown", "-R", user.name, str(source)], check=True)
    env = ["env", "-i", f"HOME={user.home}", f"PATH={user.home}/.local/bin:{USER_PATH}", "NO_COLOR=1",
           "COLUMNS=200"]
    installed = subprocess.run(
        ["unshare", "--net", "--", "runuser", "-u", user.name, "--", *env, "pipx", "install",
         f"--pip-args=--no-index --find-links={WHEELS}", str(source)],
        capture_output=True, text=True, timeout=600, cwd="/tmp")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]

    def netstep(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", user.name, "--", *env, "netstep", *args], capture_output=True,
                              text=True, timeout=600, cwd="/tmp", stdin=subprocess.DEVNULL)

    before = machine_network_state()
    doctor = netstep("doctor")
    assert "iptables is missing" not in doctor.stdout and "user namespaces" in doctor.stdout, doctor.stdout
    run = netstep("run", "lesson6", "--yes")
    assert run.returncode == 0 and "Every check came out as expected." in run.stdout, run.stdout[-3000:] + run.stderr
    assert netstep("reset").returncode == 0 and user.processes_end()
    assert machine_network_state() == before
