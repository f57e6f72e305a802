#!/usr/bin/env bash
# netstep's quick start, for a fresh Debian or Ubuntu machine, as root.
#
#   ./quickstart.sh course        install everything, then run the whole course step by step
#   ./quickstart.sh setup-tests   install everything the tests need too (then: .venv/bin/python -m pytest -q)
#
# It installs the Debian packages netstep uses (only those missing), makes a virtual
# environment in .venv and installs netstep into it. Running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")"

what="${1:-}"
case "$what" in
  course|setup-tests) ;;
  *) echo "usage: ./quickstart.sh course|setup-tests" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "netstep creates network namespaces and needs root: run sudo ./quickstart.sh $what" >&2
  exit 1
fi

# Debian packages: iproute2 (ip), iptables, iputils-ping, conntrack, util-linux (nsenter,
# unshare, findmnt), graphviz (dot, which draws the lab's diagrams), and a Python with venv.
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nsenter >/dev/null || need+=(util-linux)
command -v dot >/dev/null || need+=(graphviz)
command -v python3 >/dev/null || need+=(python3)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need+=(python3-venv)
fi
# The tests also check the Vagrantfile with `vagrant validate` (no provider needed), drive
# the demo in tmux, and run the benchmark's shell baseline, which uses curl. The VM test
# builds a Debian image (debootstrap, mkfs.ext4 -d), boots it in QEMU, reaches it by SSH,
# and both notebook browser tests drive Debian's Chromium (through pip's playwright). The
# JupyterHub test runs JupyterHub's proxy, configurable-http-proxy, on Debian's Node.js,
# and a test installs netstep as an ordinary user with pipx, as the README says.
if [ "$what" = setup-tests ]; then
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v vagrant >/dev/null || need+=(vagrant)
  command -v tmux >/dev/null || need+=(tmux)
  command -v curl >/dev/null || need+=(curl)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
  command -v ssh >/dev/null || need+=(openssh-client)
  command -v chromium >/dev/null || need+=(chromium)
  command -v pipx >/dev/null || need+=(pipx)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# br_netfilter: lessons 6 and 9 show what it does to bridged traffic and lesson 10 turns its
# switch; without it, lesson 10 and the lessons after it cannot run. Docker and Kubernetes
# load it on their hosts. Loaded for this boot (`netstep doctor` says when it is missing).
if [ ! -d /proc/sys/net/bridge ]; then
  echo "Loading the kernel's br_netfilter module (lessons 6, 9 and 10 are about it)"
  modprobe br_netfilter || echo "Could not load br_netfilter: lessons 10 to 13 will not run here" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# The README's path for an ordinary user (`pipx install .`) is tested offline, as a new user
# in a network namespace of its own: its wheels (netstep's dependencies and its build
# backend, hatchling) are kept here.
if [ "$what" = setup-tests ]; then
  .venv/bin/python -m pip wheel -q --wheel-dir .venv/wheels . hatchling >/dev/null
fi

# configurable-http-proxy (JupyterHub's proxy, for tests/test_jupyterhub.py) comes from the
# npm registry, into .venv/node beside the tests' Python packages: not into the machine's
# /usr/local (npm -g) for every user, and gone with .venv. The test runs it from there.
if [ "$what" = setup-tests ] && [ ! -x .venv/node/node_modules/.bin/configurable-http-proxy ]; then
  npm install --prefix .venv/node --no-audit --no-fund --silent configurable-http-proxy@4 >/dev/null
fi

if [ "$what" = course ]; then
  exec .venv/bin/python -m netstep run all
fi
