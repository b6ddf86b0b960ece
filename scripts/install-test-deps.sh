#!/usr/bin/env bash
# Installs the system tools the test suites need and that Go cannot provide.
#
#   graphviz (dot): `go tool pprof -pdf` renders through it; test/interop
#                   checks that operators can turn a CPU profile into a PDF.
#
# Idempotent: a tool already on PATH is left alone. Runs as root, or through
# sudo when not root.
set -euo pipefail

log() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "not root and sudo is not available: cannot run '$*'"
	fi
}

if command -v dot >/dev/null 2>&1; then
	log "graphviz already installed ($(command -v dot)); nothing to do"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
	die "'dot' (graphviz) is missing and apt-get is not available: install graphviz by hand"

log "graphviz 'dot' not found: installing package graphviz with apt-get"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update || die "apt-get update failed"
as_root apt-get install -y --no-install-recommends graphviz || die "apt-get install graphviz failed"

command -v dot >/dev/null 2>&1 || die "graphviz installed but 'dot' is still not on PATH"
log "installed graphviz: $(dot -V 2>&1)"
