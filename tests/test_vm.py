"""The VM: the Vagrantfile validates, and its provisioning script is idempotent.

The provisioning script runs here twice into a scratch prefix (no systemd service):
the first run installs, the second must change nothing and say so ("changed: 0").
Its notebook part runs on its own against a fake course, to show that re-provisioning
never changes a notebook the student changed (tests/test_vm_qemu.py does it on a VM).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import REPO, needs_root

PROVISION = REPO / "vm" / "provision.sh"


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant (quickstart.sh setup-tests installs it)")
def test_vagrantfile_validates(tmp_path):
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d")}
    # --ignore-provider: the file is checked without VirtualBox or libvirt, which this kind of
    # machine does not have (nor does quickstart.sh install them).
    result = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_vagrantfile_uses_a_maintained_box_and_the_provisioning_script():
    text = (REPO / "Vagrantfile").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert "vm/provision.sh" in text and "8888" in text


@needs_root
def test_provisioning_twice_changes_nothing_the_second_time(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    prefix = tmp_path / "opt"
    env = {**os.environ, "NETSTEP_SRC": str(src), "PREFIX": str(prefix), "ETC": str(tmp_path / "etc"),
           "SYSTEMD": "0", "JUPYTER_USER": "root"}
    script = REPO / "vm" / "provision.sh"
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "changed: 0" not in first.stdout
    token = (tmp_path / "etc" / "jupyter-token").read_text()
    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip().splitlines()[-1] == "provision: changed: 0", second.stdout
    assert (tmp_path / "etc" / "jupyter-token").read_text() == token
    kernel = json.loads((prefix / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert kernel["argv"][0] == str(prefix / "venv/bin/python") and "ipykernel_launcher" in kernel["argv"]
    assert "sudo" not in kernel["argv"]  # the kernel runs as the Jupyter user: its labs in user namespaces
    assert sorted(p.name for p in (prefix / "notebooks").glob("*.ipynb")) == \
        sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    check = subprocess.run([str(prefix / "venv/bin/python"), "-c", "import netstep, jupyterlab; print('ok')"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "ok", check.stderr


def _sync(src: Path, prefix: Path, only: str = "notebooks") -> subprocess.CompletedProcess:
    """Run provision.sh's notebook part as the VM would, the notebooks given to `nobody`."""
    env = {**os.environ, "NETSTEP_SRC": str(src), "PREFIX": str(prefix), "ETC": str(prefix / "etc"),
           "SYSTEMD": "0", "JUPYTER_USER": "nobody", "NETSTEP_PROVISION_ONLY": only}
    return subprocess.run(["bash", str(PROVISION)], env=env, capture_output=True, text=True, timeout=60)


def _course(src: Path, **notebooks: str) -> None:
    """A fake course: pyproject.toml and one notebook per keyword (name without .ipynb)."""
    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    (src / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    for name, text in notebooks.items():
        (src / "notebooks" / f"{name}.ipynb").write_text(text)


def _state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under folder with its bytes and mtime: a run that changes nothing keeps this."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _changed(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("provision: changed: "), result.stdout
    return int(last.rsplit(" ", 1)[1])


@needs_root
def test_reprovisioning_keeps_the_students_notebooks(tmp_path):
    src, prefix = tmp_path / "src", tmp_path / "opt"
    nbs = prefix / "notebooks"
    _course(src, **{"01-netns": "netns v1", "02-veth": "veth v1"})

    first = _sync(src, prefix)
    assert _changed(first) == 2 and "copied 02-veth.ipynb" in first.stdout
    assert (nbs / "02-veth.ipynb").read_text() == "veth v1"
    assert (nbs / "02-veth.ipynb").stat().st_uid == int(subprocess.check_output(["id", "-u", "nobody"]))
    before = _state(prefix)
    assert _changed(_sync(src, prefix)) == 0 and _state(prefix) == before, "a run with nothing new changed files"

    # The student runs 02-veth and saves it: the course has nothing new, so nothing happens.
    (nbs / "02-veth.ipynb").write_text("veth v1, with my notes")
    assert _changed(_sync(src, prefix)) == 0
    assert (nbs / "02-veth.ipynb").read_text() == "veth v1, with my notes"

    # The course updates both: the untouched one is replaced, the student's stays and the new one goes beside it.
    _course(src, **{"01-netns": "netns v2", "02-veth": "veth v2"})
    update = _sync(src, prefix)
    assert _changed(update) == 2, update.stdout
    assert (nbs / "01-netns.ipynb").read_text() == "netns v2"
    assert (nbs / "02-veth.ipynb").read_text() == "veth v1, with my notes"
    beside = list(nbs.glob("02-veth.course-*.ipynb"))
    assert len(beside) == 1 and beside[0].read_text() == "veth v2"
    assert f"kept your 02-veth.ipynb as it is (you changed it); the course's new version is beside it: " \
           f"{beside[0].name}" in update.stdout
    before = _state(prefix)
    assert _changed(_sync(src, prefix)) == 0 and _state(prefix) == before

    # A notebook the student deleted comes back; one from before the manifest is the student's.
    (nbs / "01-netns.ipynb").unlink()
    (nbs / "03-bridge.ipynb").write_text("an old provisioning's copy, or the student's")
    _course(src, **{"03-bridge": "bridge v2"})
    again = _sync(src, prefix)
    assert _changed(again) == 2, again.stdout
    assert "restored 01-netns.ipynb" in again.stdout
    assert (nbs / "01-netns.ipynb").read_text() == "netns v2"
    assert (nbs / "03-bridge.ipynb").read_text() == "an old provisioning's copy, or the student's"
    assert [p.read_text() for p in nbs.glob("03-bridge.course-*.ipynb")] == ["bridge v2"]


@needs_root
def test_provisioning_refuses_an_unknown_part(tmp_path):
    _course(tmp_path / "src", one="1")
    result = _sync(tmp_path / "src", tmp_path / "opt", only="notebook")
    assert result.returncode == 2
    assert "NETSTEP_PROVISION_ONLY is 'notebook'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "opt").exists()
