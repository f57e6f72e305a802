"""The lab's own /etc: the lab host's resolv.conf and one folder per namespace under netns/.

A lab keeps these in its folder (`LAB/etc`), never in the machine's /etc: `netstep shell`
lays the folder over /etc in the shell's own mount namespace (an overlay, so the machine's
files stay in sight and every write lands in the lab), where `ip netns exec NAME` binds
/etc/netns/NAME/resolv.conf over /etc/resolv.conf as it does anywhere, and `nsenter`
binds nothing. The dns check reads the file a program started by `ip netns exec` reads.
"""

from __future__ import annotations

import os
import shutil

from netstep.course.actions import Action, EtcFile
from netstep.errors import KernelError
from netstep.i18n import _
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change

ETC = "etc"  # the lab's /etc, in its folder (the overlay's upper layer)
WORK = ".etc-work"  # the overlay's work folder, beside it
SYSTEMD_RESOLVED = "nameserver 127.0.0.53\noptions edns0 trust-ad\n"  # what systemd-resolved's stub writes


def etc_of(lab_dir: str) -> str:
    return os.path.join(lab_dir, ETC)


def seed(lab_dir: str) -> None:
    """A new lab's /etc: the lab host's resolv.conf names systemd-resolved's stub, 127.0.0.53."""
    for sub in (ETC, WORK):
        shutil.rmtree(os.path.join(lab_dir, sub), ignore_errors=True)
    os.makedirs(etc_of(lab_dir), exist_ok=True)
    os.makedirs(os.path.join(lab_dir, WORK), exist_ok=True)
    with open(os.path.join(etc_of(lab_dir), "resolv.conf"), "w") as f:
        f.write(SYSTEMD_RESOLVED)


def remove(lab_dir: str) -> None:
    for sub in (ETC, WORK):
        shutil.rmtree(os.path.join(lab_dir, sub), ignore_errors=True)


def resolv_conf(lab_dir: str, ns: str) -> tuple[str, str]:
    """(path as the program sees it, text) of the resolv.conf a program started in `ns` by
    `ip netns exec` reads: /etc/netns/NS/resolv.conf where the lab has one, else the lab
    host's /etc/resolv.conf (the machine's, for a lab that has none)."""
    candidates = [("/etc/resolv.conf", os.path.join(etc_of(lab_dir), "resolv.conf")),
                  ("/etc/resolv.conf", "/etc/resolv.conf")]
    if ns != "host":  # ip netns exec binds a namespace's own file over /etc/resolv.conf
        candidates.insert(0, (f"/etc/netns/{ns}/resolv.conf",
                              os.path.join(etc_of(lab_dir), "netns", ns, "resolv.conf")))
    for shown, path in candidates:
        text = _read(path)
        if text is not None:
            return shown, text
    return "/etc/resolv.conf", ""


def nameservers(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf, in its order."""
    return [words[1] for words in map(str.split, text.splitlines()) if words[:1] == ["nameserver"] and len(words) > 1]


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def apply_etc_file(action: EtcFile, lab: LabAccess) -> Action:
    """mkdir, cp, echo > and rm -r of /etc/netns/NAME[/resolv.conf], done in the lab's /etc.
    The undo puts back the folder and the file as they were (`restore`)."""
    folder = os.path.join(etc_of(lab.dir), "netns", action.netns)
    conf = os.path.join(folder, "resolv.conf")
    had_folder, had_text = os.path.isdir(folder), _read(conf)
    undo = about_to_change(EtcFile(action.ns, netns=action.netns, op="restore", content=had_text or "",
                                   folder=had_folder, file=had_text is not None))
    if action.op == "restore":
        shutil.rmtree(folder, ignore_errors=True)
        if action.folder:
            os.makedirs(folder, exist_ok=True)
            if action.file:
                _write(conf, action.content)
        _tidy(lab.dir)
        return undo
    if action.op == "mkdir":
        os.makedirs(folder, exist_ok=True)
    elif action.op in ("copy", "write"):
        if not had_folder:
            raise KernelError(_("`{command}`: /etc/netns/{netns} does not exist (make it first: "
                                "mkdir -p /etc/netns/{netns})").format(command=action.command(), netns=action.netns))
        _write(conf, resolv_conf(lab.dir, "host")[1] if action.op == "copy" else action.content)
    elif action.op == "rmdir":
        if not had_folder:
            raise KernelError(_("`{command}`: /etc/netns/{netns} does not exist")
                              .format(command=action.command(), netns=action.netns))
        shutil.rmtree(folder)
        _tidy(lab.dir)
    else:
        raise KernelError(_("netstep cannot do `{op}` to /etc/netns/{netns}").format(op=action.op, netns=action.netns))
    return undo


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _tidy(lab_dir: str) -> None:
    """/etc/netns itself goes when its last folder goes: the machine has none either."""
    top = os.path.join(etc_of(lab_dir), "netns")
    if os.path.isdir(top) and not os.listdir(top):
        os.rmdir(top)
