#!/bin/bash
# Entrypoint of the Dask image (run by tini): optional extra packages, then exec the command.
#
#   EXTRA_PIP_PACKAGES    pip install these before starting (space-separated requirement specs).
#                         A failure (no network, no such package) is logged and the command
#                         starts anyway, without them.
#   EXTRA_CONDA_PACKAGES  not supported: this image has no conda. Logged, ignored.
#   EXTRA_APT_PACKAGES    not supported: the image has no apt package lists and may run as
#                         non-root. Logged, ignored.
#   EXTRA_PIP_TARGET      where to install when /opt/venv is not writable (non-root user);
#                         default /tmp/dask-extra-packages, added to PYTHONPATH.
set -o nounset -o pipefail

log() { echo "prepare.sh: $*" >&2; }

if [ -n "${EXTRA_APT_PACKAGES:-}" ]; then
    log "EXTRA_APT_PACKAGES='${EXTRA_APT_PACKAGES}' is NOT installed: apt is not available in" \
        "this image. Build an image FROM this one that installs them (apt-get install), or use" \
        "EXTRA_PIP_PACKAGES for Python packages."
fi

if [ -n "${EXTRA_CONDA_PACKAGES:-}" ]; then
    log "EXTRA_CONDA_PACKAGES='${EXTRA_CONDA_PACKAGES}' is NOT installed: this image has no" \
        "conda (it is a Python venv at /opt/venv). Use EXTRA_PIP_PACKAGES, or build an image" \
        "FROM this one that installs them."
fi

if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
    # Word splitting is wanted: the variable holds several requirement specs.
    # shellcheck disable=SC2086
    read -r -a packages <<< "${EXTRA_PIP_PACKAGES}"
    pip_args=(--no-cache-dir --disable-pip-version-check --timeout "${PIP_DEFAULT_TIMEOUT:-30}")
    pip_args+=(--retries "${EXTRA_PIP_RETRIES:-2}")
    if [ -w /opt/venv/lib ]; then
        log "pip install ${packages[*]}"
        target_desc="/opt/venv"
    else
        target="${EXTRA_PIP_TARGET:-/tmp/dask-extra-packages}"
        pip_args+=(--target "${target}")
        export PYTHONPATH="${target}${PYTHONPATH:+:${PYTHONPATH}}"
        export PATH="${target}/bin:${PATH}"
        log "/opt/venv is not writable (uid $(id -u)): pip install --target ${target} ${packages[*]}"
        target_desc="${target}"
    fi
    # pip's output goes to stderr with ours: stdout belongs to the command.
    if /opt/venv/bin/pip install "${pip_args[@]}" "${packages[@]}" 1>&2; then
        log "installed EXTRA_PIP_PACKAGES into ${target_desc}"
    else
        status=$?
        log "WARNING: pip install of EXTRA_PIP_PACKAGES='${EXTRA_PIP_PACKAGES}' FAILED" \
            "(exit ${status}; no network or no such package?). Starting WITHOUT them."
    fi
fi

if [ "$#" -eq 0 ]; then
    log "no command given"
    exit 64
fi
exec "$@"
