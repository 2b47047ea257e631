# Shared helpers for scripts/run and scripts/test. Sourced, not executed.

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages that are not installed yet (apt-get update at most once per run).
ensure_packages() {
  local missing=()
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  if [ -z "${FJORD_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    export FJORD_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What building Fjord needs besides the Swift toolchain: the codec libraries the record
# validator links (zlib, snappy, lz4, zstd), liburing for the io_uring backend, pkg-config.
BUILD_PACKAGES=(pkg-config zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev liburing-dev)

require_swift() {
  if ! command -v swift >/dev/null 2>&1; then
    echo "error: the Swift toolchain (6.1 or newer) is not on PATH; install it from swift.org first" >&2
    exit 1
  fi
}
