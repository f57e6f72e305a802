#!/usr/bin/env bash
# Provision a machine for netstep's notebooks: the Debian packages, netstep and
# JupyterLab in a venv, a Jupyter kernel that runs as the Jupyter user (no sudo: each lab
# lives in a user namespace of that user's own), and JupyterLab as a service on port 8888. Idempotent: a second run changes nothing, and
# says so on its last line ("changed: 0").
#
# The notebooks are the student's: provisioning never changes or deletes one the student
# changed (see step 3).
#
# Settings (environment): NETSTEP_SRC (the repository, default /vagrant), PREFIX (default
# /opt/netstep), JUPYTER_USER (who runs JupyterLab, default vagrant), ETC (default
# /etc/netstep), SYSTEMD (1: install and start the service; default 1 where systemd runs),
# NETSTEP_PROVISION_ONLY (empty: everything; "notebooks": only step 3, which the tests use).
set -euo pipefail

SRC="${NETSTEP_SRC:-/vagrant}"
PREFIX="${PREFIX:-/opt/netstep}"
ETC="${ETC:-/etc/netstep}"
JUPYTER_USER="${JUPYTER_USER:-vagrant}"
if [ -z "${SYSTEMD:-}" ]; then
  if [ -d /run/systemd/system ]; then SYSTEMD=1; else SYSTEMD=0; fi
fi
ONLY="${NETSTEP_PROVISION_ONLY:-}"
case "$ONLY" in
  ""|notebooks) ;;
  *) echo "NETSTEP_PROVISION_ONLY is '$ONLY': it can only be empty (everything) or 'notebooks'" >&2; exit 2 ;;
esac
VENV="$PREFIX/venv"
NOTEBOOKS="$PREFIX/notebooks"
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

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Copy course notebook $1 to $2 (through a temporary file, so JupyterLab never reads half
# of one), owned by the Jupyter user.
install_notebook() {
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").provisioning"
  cp "$1" "$tmp"
  chmod 0644 "$tmp"
  if id "$JUPYTER_USER" >/dev/null 2>&1; then chown "$JUPYTER_USER" "$tmp"; fi
  mv -f "$tmp" "$2"
}

# 3. The notebooks, where JupyterLab opens. A manifest outside the student's reach keeps
#    the sha256 of every notebook provisioning wrote. A notebook is replaced only while it
#    is exactly what provisioning last wrote; one the student changed is left as it is,
#    and a new course version of it goes beside it as NAME.course-HASH.ipynb (HASH: the
#    start of its sha256, so a run with nothing new writes nothing). A notebook the
#    student deleted comes back as the course's version.
sync_notebooks() {
  local manifest="$PREFIX/notebooks.provisioned" sum name nb target new cur beside
  local -A wrote=() keep=()
  mkdir -p "$NOTEBOOKS"
  if [ -f "$manifest" ]; then
    while read -r sum name; do
      if [ -n "$name" ]; then wrote[$name]=$sum; fi
    done < "$manifest"
  fi
  for nb in "$SRC"/notebooks/*.ipynb; do
    [ -f "$nb" ] || continue
    name=$(basename "$nb")
    target="$NOTEBOOKS/$name"
    new=$(sha "$nb")
    if [ ! -e "$target" ]; then
      install_notebook "$nb" "$target"
      keep[$name]=$new
      if [ -n "${wrote[$name]:-}" ]; then changed "restored $name (it had been deleted)"; else changed "copied $name"; fi
      continue
    fi
    cur=$(sha "$target")
    if [ "$cur" = "$new" ]; then
      keep[$name]=$new
      continue
    fi
    if [ "$cur" = "${wrote[$name]:-}" ]; then
      install_notebook "$nb" "$target"
      keep[$name]=$new
      changed "updated $name (you had not changed it)"
      continue
    fi
    # The student's own version (or one from before this manifest existed): never touched.
    if [ -n "${wrote[$name]:-}" ]; then keep[$name]=${wrote[$name]}; fi
    [ "$new" != "${wrote[$name]:-}" ] || continue  # and the course has nothing new for it
    beside="${name%.ipynb}.course-${new:0:8}.ipynb"
    if [ -e "$NOTEBOOKS/$beside" ]; then
      # Written by an earlier run; if the student has since changed it, it is theirs too.
      if [ "$(sha "$NOTEBOOKS/$beside")" = "$new" ]; then keep[$beside]=$new; fi
      continue
    fi
    install_notebook "$nb" "$NOTEBOOKS/$beside"
    keep[$beside]=$new
    changed "kept your $name as it is (you changed it); the course's new version is beside it: $beside"
  done
  local listing=""
  for name in "${!keep[@]}"; do listing+="${keep[$name]}  $name"$'\n'; done
  listing=$(printf '%s' "$listing" | sort)
  if [ ! -f "$manifest" ] || [ "$(cat "$manifest")" != "$listing" ]; then
    printf '%s\n' "$listing" > "$manifest"
  fi
}

if [ "$ONLY" = notebooks ]; then
  sync_notebooks
  say "changed: $changed"
  exit 0
fi

# 1. Debian packages, only those missing.
need=()
for pkg in iproute2 iptables iputils-ping conntrack util-linux python3 python3-venv graphviz; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  changed "installed ${need[*]}"
fi

# 1b. br_netfilter, as a Docker or Kubernetes host has it: lessons 6 and 9 show what it does
#     to bridged traffic and lesson 10 turns its switch (without it, lesson 10 cannot run,
#     nor the lessons after it). Loaded now and at every boot; the VM has no bridge of its own.
put /etc/modules-load.d/netstep.conf "br_netfilter"
if [ ! -d /proc/sys/net/bridge ]; then
  modprobe br_netfilter
  changed "loaded br_netfilter"
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

# 3. The notebooks (sync_notebooks above).
sync_notebooks
if id "$JUPYTER_USER" >/dev/null 2>&1 && [ "$(stat -c %U "$NOTEBOOKS")" != "$JUPYTER_USER" ]; then
  chown -R "$JUPYTER_USER" "$NOTEBOOKS"
  changed "gave $NOTEBOOKS to $JUPYTER_USER"
fi

# 4. The kernel runs as the Jupyter user, as JupyterLab does: no root, no sudo. Its labs
#    live in user namespaces of that user's own (Debian 12 allows unprivileged ones), where
#    netstep is root over the lab alone (see README, "As an ordinary user").
kernel="{
 \"argv\": [\"$VENV/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"],
 \"display_name\": \"Python 3 (netstep)\",
 \"language\": \"python\",
 \"env\": {\"NETSTEP_LAB\": \"notebook\"}
}"
# The notebooks name their kernel "python3": that name, in this JUPYTER_PATH, is this kernel.
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
ExecStart=/bin/sh -c 'exec $VENV/bin/jupyter lab --no-browser --ip=0.0.0.0 --port=8888 --LabApp.expose_app_in_browser=True --ServerApp.token=\$(cat $ETC/jupyter-token)'
Restart=on-failure

[Install]
WantedBy=multi-user.target"
if [ "$SYSTEMD" = 1 ]; then
  unit=/etc/systemd/system/netstep-jupyter.service
  if ! cmp -s "$ETC/jupyterlab.service" "$unit" 2>/dev/null; then
    cp "$ETC/jupyterlab.service" "$unit"
    systemctl daemon-reload
    systemctl try-restart netstep-jupyter
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
