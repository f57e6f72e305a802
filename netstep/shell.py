"""`netstep shell`: a root shell where the article's commands work literally.

The shell gets a mount namespace of its own in which /run/netns is the lab's container
folder, and its network namespace is the lab host's (or a container's). So `ip netns list`
shows the lab's containers, `ip netns exec netns0 ...` works, and an `ip netns add netns2`
typed there lands in the lab's folder (the folder is a shared mount, so the new namespace
propagates back), while the machine's own /run/netns and network stack stay untouched.
"""

from __future__ import annotations

import shutil

from netstep.errors import NetstepError

# Runs inside `unshare --mount --propagation unchanged`: make the mount that holds
# /run/netns private (so nothing below propagates to the machine), then put the lab's
# shared container folder there and enter the namespace.
SCRIPT = r"""
set -e
dir="$1"; netns="$2"; label="$3"
created=
if [ ! -d /run/netns ]; then mkdir -p /run/netns; created=1; fi
mount --make-private "$(findmnt -n -o TARGET --target /run/netns)"
mount --bind "$dir" /run/netns
set +e
PS1="[$label]# " nsenter --net="$netns" -- bash --norc --noprofile -i
rc=$?
umount /run/netns
if [ -n "$created" ]; then rmdir /run/netns 2>/dev/null; fi
exit $rc
"""


def shell_argv(lab, namespace: str) -> list[str]:
    """The argv that opens the student's shell in `namespace` of `lab`."""
    path = lab.require(namespace)
    for tool in ("unshare", "nsenter", "findmnt", "bash"):
        if not shutil.which(tool):
            raise NetstepError(f"`netstep shell` needs {tool}; install util-linux and bash.")
    label = f"netstep {lab.name}: {namespace}"
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", SCRIPT, "netstep-shell",
            lab.netns_dir, path, label]
