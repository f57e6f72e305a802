"""`netstep shell`: a root shell where the article's commands work literally.

The shell gets a mount namespace of its own in which /run/netns is the lab's container
folder and /etc shows the lab's own files over the machine's (a sandbox lab's resolv.conf
and /etc/netns, netstep.ops.files), and its network namespace is the lab host's (or a container's). So `ip netns list`
shows the lab's containers, `ip netns exec netns0 ...` and the article's `nsenter
--net=/var/run/netns/netns0 ...` work, and an `ip netns add netns2`
typed there lands in the lab's folder (the folder is a shared mount, so the new namespace
propagates back), while the machine's own /run/netns and network stack stay untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import suppress

from netstep.errors import NetstepError
from netstep.ops.files import etc_of

# Runs inside `unshare --mount --propagation unchanged`: make the mount that holds
# /run/netns private (so nothing below propagates to the machine), then put the lab's
# shared container folder there and enter the namespace.
# No umount on the way out: an unmount would propagate into the lab's folder and unpin
# its namespaces, while the mount namespace dying with the shell propagates nothing.
# findmnt lists every mount on the path, hidden ones too (in an ordinary user's lab, the
# machine's /run/netns under the lab's own /run): the last is the one in sight.
SCRIPT = r"""
set -e
dir="$1"; netns="$2"; label="$3"
mount --make-private "$(findmnt -n -o TARGET --target /run/netns | tail -n 1)"
mount --rbind "$dir" /run/netns
# The article's `nsenter --net=/var/run/netns/netns0`: /var/run is a symlink to /run on
# current systems; where it is a folder of its own, its netns folder gets the lab's too.
if [ -d /var/run/netns ] && [ "$(readlink -f /var/run/netns)" != /run/netns ]; then
    mount --make-private "$(findmnt -n -o TARGET --target /var/run/netns)"
    mount --rbind "$dir" /var/run/netns
fi
# The lab's own /etc (netstep.ops.files) laid over the machine's, in this mount namespace
# only: the machine's files stay in sight, and every write to /etc lands in the lab's
# folder, /etc/netns/NAME/resolv.conf too (which `ip netns exec NAME` binds; nsenter does not).
if [ -n "$4" ]; then
    mkdir -p "$4/etc" "$4/.etc-work"
    mount --make-private "$(findmnt -n -o TARGET --target /etc | tail -n 1)"  # nothing propagates out
    mount -t overlay netstep-etc -o "lowerdir=/etc,upperdir=$4/etc,workdir=$4/.etc-work" /etc
fi
PS1="[$label]# " exec nsenter --net="$netns" -- bash --norc --noprofile -i
"""


def open_shell(lab, namespace: str) -> int:
    """Run the student's shell until it exits; return its exit status."""
    argv = shell_argv(lab, namespace)
    created = not os.path.isdir("/run/netns")
    if created:
        os.makedirs("/run/netns")  # where `ip netns` looks; removed again below if we made it
    try:
        return subprocess.run(argv, check=False).returncode
    finally:
        if created:
            with suppress(OSError):
                os.rmdir("/run/netns")


def shell_argv(lab, namespace: str) -> list[str]:
    """The argv that opens the student's shell in `namespace` of `lab`."""
    path = lab.require(namespace)
    for tool in ("unshare", "nsenter", "findmnt", "bash"):
        if not shutil.which(tool):
            raise NetstepError(f"`netstep shell` needs {tool}; install util-linux and bash.")
    label = f"netstep {lab.name}: {namespace}"
    etc = lab.dir if os.path.isdir(etc_of(lab.dir)) else ""  # a host-mode lab keeps the machine's /etc
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", SCRIPT, "netstep-shell",
            lab.netns_dir, path, label, etc]
