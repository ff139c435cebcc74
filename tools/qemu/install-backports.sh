#!/usr/bin/env bash
# Installs Debian's QEMU 10.0 (bookworm-backports) beside the system's QEMU 7.2, without replacing it:
# the packages are downloaded and unpacked into .cache/qemu-10.0/ (ignored by git), so both versions can
# drive the QEMU world, alone or as a cross-version pair. Idempotent: a second run only checks and prints.
#
# The backports suite is added by copying the system's own Debian entry from
# /etc/apt/sources.list.d/debian.sources (its mirror, keyring and components) with Suites set to
# <codename>-backports, so no mirror host is written into this repository.
#
# Prints the path of the 10.0 binary on its last line:
#   QTEST_QEMU_BINARY=$(tools/qemu/install-backports.sh | tail -1) deno task matrix --backend qemu
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils seabios)
PREFIX="${MIGTEST_QEMU_BACKPORTS_DIR:-$PWD/.cache/qemu-10.0}"
BINARY="$PREFIX/usr/bin/qemu-system-x86_64"
SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources

# shellcheck disable=SC1091
. /etc/os-release
CODENAME="${VERSION_CODENAME:?/etc/os-release names no VERSION_CODENAME}"
SUITE="$CODENAME-backports"
OUR_SOURCES="/etc/apt/sources.list.d/migtest-$SUITE.sources"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { echo "install-backports: $*" >&2; }

# Already unpacked and it runs: nothing to do (the version check keeps a half-unpacked folder from passing).
if [ -x "$BINARY" ] && "$BINARY" --version 2>/dev/null | grep -q '^QEMU emulator version 10\.'; then
  log "already installed: $("$BINARY" --version | head -1)"
  echo "$BINARY"
  exit 0
fi

# The first deb822 stanza of the system's Debian sources whose Suites names the release itself (not its
# -updates or -security suites), with Suites replaced: the same mirror, keyring and components.
derive_sources() {
  awk -v codename="$CODENAME" -v suite="$SUITE" '
    BEGIN { RS = ""; FS = "\n" }
    {
      found = 0
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Suites:/) {
          n = split(substr($i, 8), s, /[ \t]+/)
          for (j = 1; j <= n; j++) if (s[j] == codename) found = 1
        }
      }
      if (!found) next
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^#/) continue
        if ($i ~ /^Suites:/) print "Suites: " suite; else print $i
      }
      exit
    }' "$SYSTEM_SOURCES"
}

if [ ! -r "$SYSTEM_SOURCES" ]; then
  log "$SYSTEM_SOURCES not found: add a $SUITE entry to apt's sources by hand, then run this again"
  exit 1
fi
ENTRY="$(derive_sources)"
if [ -z "$ENTRY" ]; then
  log "no entry for suite '$CODENAME' in $SYSTEM_SOURCES"
  exit 1
fi
if [ ! -f "$OUR_SOURCES" ] || [ "$(cat "$OUR_SOURCES")" != "$ENTRY" ]; then
  log "adding $OUR_SOURCES (derived from $SYSTEM_SOURCES)"
  printf '%s\n' "$ENTRY" | $SUDO tee "$OUR_SOURCES" >/dev/null
fi
log "apt-get update"
$SUDO apt-get update -q >&2

# apt-get download needs no root and installs nothing: 7.2 stays the system's QEMU.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(
  cd "$WORK"
  for p in "${PACKAGES[@]}"; do
    log "apt-get download $p/$SUITE"
    apt-get download -q "$p/$SUITE" >&2
  done
)
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
for deb in "$WORK"/*.deb; do
  log "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$PREFIX"
done
if ! "$BINARY" --version >/dev/null; then
  log "$BINARY does not run (a missing library? ldd shows which)"
  exit 1
fi
log "installed: $("$BINARY" --version | head -1)"
echo "$BINARY"
