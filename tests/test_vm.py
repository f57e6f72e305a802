"""The VM: the Vagrantfile validates, and its provisioning script is idempotent.

The provisioning script runs here twice into a scratch prefix (no systemd service):
the first run installs, the second must change nothing and say so ("changed: 0").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from support import REPO, needs_root


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant (quickstart.sh setup-tests installs it)")
def test_vagrantfile_validates(tmp_path):
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d")}
    result = subprocess.run(["vagrant", "validate"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
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
    assert kernel["argv"][:2] == ["sudo", "-n"] and "ipykernel_launcher" in kernel["argv"]
    assert sorted(p.name for p in (prefix / "notebooks").glob("*.ipynb")) == \
        sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    check = subprocess.run([str(prefix / "venv/bin/python"), "-c", "import netstep, jupyterlab; print('ok')"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "ok", check.stderr
