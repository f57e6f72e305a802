#!/usr/bin/env bash
# Build the VM test's Debian 12 image: what a `debian/bookworm64` Vagrant box gives
# provisioning (systemd, OpenSSH, sudo, a `vagrant` user with password-less sudo), made
# from Debian's packages with debootstrap, with Debian's own kernel and initrd beside it.
#
#   tests/vmimage/build.sh OUT     writes OUT/disk.raw, OUT/vmlinuz, OUT/initrd.img
#
# The guest takes its SSH key from the kernel command line (netstep.sshkey=BASE64 of an
# ed25519 public key), so one cached image serves every run with a fresh key. The test
# keys its cache on a hash of this file: change the recipe here and the image is rebuilt.
# Settings: MIRROR (default: the host's Debian mirror), DISK_SIZE (default 6G).
set -euo pipefail

out="${1:?usage: build.sh OUT}"
[ "$(id -u)" = 0 ] || { echo "build.sh must run as root (debootstrap)" >&2; exit 1; }
for tool in debootstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "build.sh needs $tool (./quickstart.sh setup-tests installs it)" >&2; exit 1; }
done
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(sed -n 's/^URIs: *\(.*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi
DISK_SIZE="${DISK_SIZE:-6G}"

mkdir -p "$out"
root=$(mktemp -d "$out/root.XXXXXX")
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

# Packages a Vagrant box has and provisioning relies on; netstep's own come from provision.sh.
debootstrap --variant=minbase \
  --include=linux-image-amd64,initramfs-tools,systemd-sysv,udev,dbus,openssh-server,sudo,ca-certificates,iproute2,procps,less \
  bookworm "$root" "$MIRROR" >"$out/debootstrap.log" 2>&1 \
  || { tail -n 30 "$out/debootstrap.log" >&2; exit 1; }

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
echo netstep >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 netstep\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 defaults 0 1' >"$root/etc/fstab"
# QEMU's user network: DHCP gives 10.0.2.15/24 via 10.0.2.2; its DNS is 10.0.2.3.
cat >"$root/etc/systemd/network/10-qemu.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"

cat >"$root/usr/local/sbin/netstep-sshkey" <<'EOF'
#!/bin/sh
# Authorize the SSH key the test put on the kernel command line (netstep.sshkey=BASE64).
for word in $(cat /proc/cmdline); do
  case "$word" in
    netstep.sshkey=*)
      mkdir -p /home/vagrant/.ssh
      echo "ssh-ed25519 ${word#netstep.sshkey=} netstep-vmtest" >/home/vagrant/.ssh/authorized_keys
      chown -R vagrant:vagrant /home/vagrant/.ssh
      chmod 0700 /home/vagrant/.ssh
      chmod 0600 /home/vagrant/.ssh/authorized_keys ;;
  esac
done
EOF
chmod 0755 "$root/usr/local/sbin/netstep-sshkey"
cat >"$root/etc/systemd/system/netstep-sshkey.service" <<'EOF'
[Unit]
Description=The VM test's SSH key, from the kernel command line
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/netstep-sshkey

[Install]
WantedBy=multi-user.target
EOF

chroot "$root" useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
chroot "$root" systemctl enable --quiet systemd-networkd netstep-sshkey ssh
chroot "$root" apt-get clean

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)
cp "$kernel" "$out/vmlinuz.new"
cp "$initrd" "$out/initrd.img.new"
rm -f "$out/disk.raw.new"
mkfs.ext4 -q -L netstep -d "$root" "$out/disk.raw.new" "$DISK_SIZE"
mv -f "$out/vmlinuz.new" "$out/vmlinuz"
mv -f "$out/initrd.img.new" "$out/initrd.img"
mv -f "$out/disk.raw.new" "$out/disk.raw"
echo "built $out/disk.raw ($(basename "$kernel"))"
