#!/usr/bin/env bash
# The JupyterHub of tests/hub on this machine: the hub's Python packages (the `hub` extra),
# configurable-http-proxy from npm into .venv/hub-proxy (not global), and two local Unix
# users, alice and bob, with the passwords PAM checks. Idempotent; needs root (useradd,
# chpasswd). A site installs the packages and the proxy the same way and has its users.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
PROXY_DIR="${KALE_HUB_PROXY_DIR:-.venv/hub-proxy}"
USERS="${KALE_HUB_USERS:-alice bob}"

"$PY" -c "import jupyterhub, batchspawner, jupyter_server_proxy" 2>/dev/null \
    || "$PY" -m pip install -q -e ".[hub]"

if [ ! -x "$PROXY_DIR/node_modules/.bin/configurable-http-proxy" ]; then
    command -v npm >/dev/null || { echo "npm is missing: apt-get install nodejs npm" >&2; exit 1; }
    mkdir -p "$PROXY_DIR"
    npm install --silent --no-audit --no-fund --prefix "$PROXY_DIR" configurable-http-proxy@^5
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "not root: users ($USERS) not created; the hub tests need them" >&2
    exit 1
fi
for u in $USERS; do
    id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
    # A test password, known to the tests (KALE_HUB_PASSWORD_<user> overrides it).
    var="KALE_HUB_PASSWORD_${u}"
    echo "$u:${!var:-kale-$u-pw}" | chpasswd
    chmod 0700 "$(getent passwd "$u" | cut -d: -f6)"
done

# The users run the venv's interpreter; when it lives under a folder they cannot
# traverse (a pyenv under /root), give them search permission on that folder only.
target="$(readlink -f "$PY")"
first="$(echo $USERS | cut -d' ' -f1)"
if ! runuser -u "$first" -- "$PY" -c "import kale_ext, jupyterhub" 2>/dev/null; then
    d=""
    IFS=/ read -ra parts <<< "$(dirname "$target")"
    for part in "${parts[@]}"; do  # from / down, so each test sees a reachable parent
        [ -n "$part" ] || continue
        d="$d/$part"
        if ! runuser -u "$first" -- test -x "$d"; then chmod o+x "$d"; echo "chmod o+x $d"; fi
    done
    runuser -u "$first" -- "$PY" -c "import kale_ext, jupyterhub" \
        || { echo "$first cannot import kale_ext with $PY" >&2; exit 1; }
fi
echo "hub ready: $("$PY" -c 'import jupyterhub, batchspawner; print("jupyterhub", jupyterhub.__version__, "batchspawner", batchspawner.__version__)'), proxy $("$PROXY_DIR/node_modules/.bin/configurable-http-proxy" --version), users $USERS"
