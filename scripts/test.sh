#!/usr/bin/env bash
# The whole test suite: unit, golden, property, integration and end-to-end tests, including
# the ones against real strongSwan in network namespaces. Installs the Debian packages they
# need when missing (needs root, as do network namespaces). A missing prerequisite fails
# with a message; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tunnelwatch-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ "$(id -u)" -ne 0 ]; then
    echo "error: the test suite needs root (network namespaces for the strongSwan testbed)" >&2
    exit 1
fi
echo "== prerequisites (Debian packages for the VPN testbed)"
bash testbed/scripts/vpn-testbed.sh install
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (console tests)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/tunnelwatch-chromium-install.log 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/tunnelwatch-chromium-install.log 2>&1 || {
            echo "error: cannot install chromium (see /tmp/tunnelwatch-chromium-install.log)" >&2
            exit 1
        }
    fi
fi

# A real S3-compatible server for the object storage tests: moto (PyPI), in a virtualenv
# outside the clone so that later runs reuse it.
MOTO_VENV="${TW_VENV:-/var/tmp/tunnelwatch-venv}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    echo "installing moto[server] into $MOTO_VENV (S3 tests)"
    if ! python3 -m venv "$MOTO_VENV" >/tmp/tunnelwatch-moto-install.log 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >>/tmp/tunnelwatch-moto-install.log 2>&1 || true
        python3 -m venv "$MOTO_VENV" >>/tmp/tunnelwatch-moto-install.log 2>&1 || {
            echo "error: cannot create a Python virtualenv at $MOTO_VENV (see /tmp/tunnelwatch-moto-install.log)" >&2
            exit 1
        }
    fi
    "$MOTO_VENV/bin/pip" install -q 'moto[server]==5.2.5' >>/tmp/tunnelwatch-moto-install.log 2>&1 || {
        echo "error: cannot install moto[server] (see /tmp/tunnelwatch-moto-install.log)" >&2
        exit 1
    }
fi
export TW_MOTO_SERVER="$MOTO_VENV/bin/moto_server"

# schemathesis (PyPI) for the API's conformance test, in a virtualenv of its own.
ST_VENV="${TW_ST_VENV:-/var/tmp/tunnelwatch-schemathesis-venv}"
if [ ! -x "$ST_VENV/bin/schemathesis" ]; then
    echo "installing schemathesis into $ST_VENV (API conformance test)"
    python3 -m venv "$ST_VENV" >/tmp/tunnelwatch-schemathesis-install.log 2>&1 &&
    "$ST_VENV/bin/pip" install -q 'schemathesis==4.32.5' >>/tmp/tunnelwatch-schemathesis-install.log 2>&1 || {
        echo "error: cannot install schemathesis (see /tmp/tunnelwatch-schemathesis-install.log)" >&2
        exit 1
    }
fi
export TW_SCHEMATHESIS="$ST_VENV/bin/schemathesis"

# aiosmtpd (PyPI), a real SMTP server for the e-mail notification tests, in a virtualenv of its own.
SMTP_VENV="${TW_AIOSMTPD_VENV:-/var/tmp/tunnelwatch-aiosmtpd-venv}"
if ! "$SMTP_VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "installing aiosmtpd into $SMTP_VENV (e-mail notification tests)"
    python3 -m venv --clear "$SMTP_VENV" >/tmp/tunnelwatch-aiosmtpd-install.log 2>&1 &&
    "$SMTP_VENV/bin/pip" install -q 'aiosmtpd==1.4.6' >>/tmp/tunnelwatch-aiosmtpd-install.log 2>&1 || {
        echo "error: cannot install aiosmtpd (see /tmp/tunnelwatch-aiosmtpd-install.log)" >&2
        exit 1
    }
fi
export TW_AIOSMTPD_PYTHON="$SMTP_VENV/bin/python"

# A real Alertmanager (Debian's prometheus-alertmanager) for the Alertmanager notification
# tests; they start it by hand on loopback, never through its service.
if [ ! -x /usr/bin/prometheus-alertmanager ]; then
    echo "installing prometheus-alertmanager (Alertmanager notification tests)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager >/tmp/tunnelwatch-alertmanager-install.log 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager >>/tmp/tunnelwatch-alertmanager-install.log 2>&1 || {
            echo "error: cannot install prometheus-alertmanager (see /tmp/tunnelwatch-alertmanager-install.log)" >&2
            exit 1
        }
    fi
fi
export TW_ALERTMANAGER=/usr/bin/prometheus-alertmanager

echo "== cargo test --workspace"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
echo "== cargo test (gateway-only build: the agent's configuration and CLI without the server)"
cargo test -p app --no-default-features --features gateway --lib --locked
