#!/usr/bin/env bash
# Provision a machine for netstep's notebooks: the Debian packages, netstep and
# JupyterLab in a venv, a Jupyter kernel that runs as root (netlink needs it), and
# JupyterLab as a service on port 8888. Idempotent: a second run changes nothing, and
# says so on its last line ("changed: 0").
#
# Settings (environment): NETSTEP_SRC (the repository, default /vagrant), PREFIX (default
# /opt/netstep), JUPYTER_USER (who runs JupyterLab, default vagrant), ETC (default
# /etc/netstep), SYSTEMD (1: install and start the service; default 1 where systemd runs).
set -euo pipefail

SRC="${NETSTEP_SRC:-/vagrant}"
PREFIX="${PREFIX:-/opt/netstep}"
ETC="${ETC:-/etc/netstep}"
JUPYTER_USER="${JUPYTER_USER:-vagrant}"
if [ -z "${SYSTEMD:-}" ]; then
  if [ -d /run/systemd/system ]; then SYSTEMD=1; else SYSTEMD=0; fi
fi
VENV="$PREFIX/venv"
changed=0

say() { echo "provision: $*"; }
changed() { changed=$((changed + 1)); say "$*"; }

# Write $2 to file $1 only if it differs; mode $3.
put() {
  local file="$1" content="$2" mode="${3:-0644}"
  if [ ! -f "$file" ] || [ "$(cat "$file")" != "$content" ]; then
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$content" > "$file"
    chmod "$mode" "$file"
    changed "wrote $file"
  fi
}

[ "$(id -u)" = 0 ] || { echo "provision.sh must run as root" >&2; exit 1; }
[ -f "$SRC/pyproject.toml" ] || { echo "no netstep source at $SRC" >&2; exit 1; }

# 1. Debian packages, only those missing.
need=()
for pkg in iproute2 iptables iputils-ping conntrack util-linux python3 python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  changed "installed ${need[*]}"
fi

# 2. A venv with netstep and JupyterLab. netstep is reinstalled only when its source changed.
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  changed "made $VENV"
fi
if ! "$VENV/bin/python" -c 'import jupyterlab' 2>/dev/null; then
  "$VENV/bin/pip" install -q jupyterlab ipykernel
  changed "installed JupyterLab"
fi
stamp="$PREFIX/netstep.source"
sum=$(cd "$SRC" && find pyproject.toml README.md netstep lessons -type f -not -name '*.pyc' -print0 | sort -z \
      | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  "$VENV/bin/pip" install -q "$SRC"
  echo "$sum" > "$stamp"
  changed "installed netstep from $SRC"
fi

# 3. The notebooks, where JupyterLab opens.
NOTEBOOKS="$PREFIX/notebooks"
mkdir -p "$NOTEBOOKS"
for nb in "$SRC"/notebooks/*.ipynb; do
  target="$NOTEBOOKS/$(basename "$nb")"
  if [ ! -f "$target" ] || ! cmp -s "$nb" "$target"; then
    cp "$nb" "$target"
    changed "copied $(basename "$nb")"
  fi
done
if id "$JUPYTER_USER" >/dev/null 2>&1 && [ "$(stat -c %U "$NOTEBOOKS")" != "$JUPYTER_USER" ]; then
  chown -R "$JUPYTER_USER" "$NOTEBOOKS"
  changed "gave $NOTEBOOKS to $JUPYTER_USER"
fi

# 4. A kernel that runs as root through sudo: namespaces and netlink need CAP_NET_ADMIN,
#    JupyterLab itself does not. (Vagrant boxes give their user password-less sudo.)
kernel="{
 \"argv\": [\"sudo\", \"-n\", \"-E\", \"$VENV/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"],
 \"display_name\": \"Python 3 (netstep, root)\",
 \"language\": \"python\",
 \"env\": {\"NETSTEP_LAB\": \"notebook\"}
}"
# The notebooks name their kernel "python3": that name, in this JUPYTER_PATH, is the root kernel.
put "$PREFIX/share/jupyter/kernels/python3/kernel.json" "$kernel"

# 5. The token, made once.
if [ ! -s "$ETC/jupyter-token" ]; then
  mkdir -p "$ETC"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ETC/jupyter-token"
  chmod 0640 "$ETC/jupyter-token"
  changed "made a Jupyter token"
fi

# 6. JupyterLab as a service.
put "$ETC/jupyterlab.service" "[Unit]
Description=JupyterLab for netstep
After=network.target

[Service]
User=$JUPYTER_USER
Environment=JUPYTER_PATH=$PREFIX/share/jupyter
WorkingDirectory=$NOTEBOOKS
ExecStart=/bin/sh -c 'exec $VENV/bin/jupyter lab --no-browser --ip=0.0.0.0 --port=8888 --ServerApp.token=\$(cat $ETC/jupyter-token)'
Restart=on-failure

[Install]
WantedBy=multi-user.target"
if [ "$SYSTEMD" = 1 ]; then
  unit=/etc/systemd/system/netstep-jupyter.service
  if ! cmp -s "$ETC/jupyterlab.service" "$unit" 2>/dev/null; then
    cp "$ETC/jupyterlab.service" "$unit"
    systemctl daemon-reload
    changed "installed $unit"
  fi
  if ! systemctl is-enabled --quiet netstep-jupyter; then
    systemctl enable --quiet netstep-jupyter
    changed "enabled netstep-jupyter"
  fi
  if ! systemctl is-active --quiet netstep-jupyter; then
    systemctl start netstep-jupyter
    changed "started netstep-jupyter"
  fi
else
  say "no systemd here: start JupyterLab with the command in $ETC/jupyterlab.service"
fi

say "changed: $changed"
