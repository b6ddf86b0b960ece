#!/usr/bin/env bash
# Installs the system tools the test suites need and that Go cannot provide.
#
#   graphviz (dot): `go tool pprof -pdf` renders through it; test/interop
#                   checks that operators can turn a CPU profile into a PDF.
#   iproute2 (ip):  test/interop runs a real nsqd in its own network namespace
#                   (ip netns, a veth pair) and cuts its link: a host death.
#   iptables:       test/interop's chaos test makes a link lossy and slow
#                   (what netem does, which this kernel lacks): an iptables
#                   rule in the nsqd's namespace hands its packets to the
#                   test through NFQUEUE.
#   prometheus (prometheus, promtool): test/interop runs a real Prometheus
#                   server against the daemon (on a free loopback port, with
#                   its own config and data directory: the package's service
#                   is not used), and promtool checks a scrape and the files
#                   of contrib/prometheus.
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

# command -> the Debian package that provides it
declare -A package=([dot]=graphviz [ip]=iproute2 [iptables]=iptables [prometheus]=prometheus [promtool]=prometheus)

missing=()
for cmd in dot ip iptables prometheus promtool; do
	if command -v "$cmd" >/dev/null 2>&1; then
		log "${package[$cmd]} already installed ($(command -v "$cmd")); nothing to do"
	else
		missing+=("$cmd")
	fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

pkgs=()
for cmd in "${missing[@]}"; do
	[[ " ${pkgs[*]} " == *" ${package[$cmd]} "* ]] || pkgs+=("${package[$cmd]}")
done
command -v apt-get >/dev/null 2>&1 ||
	die "missing ${missing[*]} and apt-get is not available: install ${pkgs[*]} by hand"

log "not found: ${missing[*]}: installing ${pkgs[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update || die "apt-get update failed"
as_root apt-get install -y --no-install-recommends "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"

for cmd in "${missing[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || die "${package[$cmd]} installed but '$cmd' is still not on PATH"
	log "installed ${package[$cmd]}: $(command -v "$cmd")"
done
