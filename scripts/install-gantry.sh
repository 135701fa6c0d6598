#!/usr/bin/env bash
# Installs gantry for the root composite action: downloads the release binary
# for this runner's OS and architecture and verifies its SHA-256 before use,
# or builds it with cargo from the action's own checkout when asked.
#
# Environment: GANTRY_VERSION (required), GANTRY_BUILD_FROM_SOURCE (true|false),
# GANTRY_DOWNLOAD_URL (release base URL; tests point it at a local mirror),
# RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_PATH, GITHUB_ACTION_PATH.
set -euo pipefail

version="${GANTRY_VERSION:?GANTRY_VERSION is required}"
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "::error title=gantry::input version must be a release number such as 0.1.0, got '$version'"
  exit 2
fi
install_root="${RUNNER_TEMP:-/tmp}/gantry-$version"
action_path="${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}"

if [ "${GANTRY_BUILD_FROM_SOURCE:-false}" = "true" ]; then
  cargo install --locked --quiet --root "$install_root" --path "$action_path/crates/gantry-cli"
else
  case "${RUNNER_OS:-Linux}/${RUNNER_ARCH:-X64}" in
    Linux/X64) target=x86_64-unknown-linux-musl ;;
    Linux/ARM64) target=aarch64-unknown-linux-musl ;;
    macOS/X64) target=x86_64-apple-darwin ;;
    macOS/ARM64) target=aarch64-apple-darwin ;;
    Windows/X64) target=x86_64-pc-windows-msvc ;;
    *)
      echo "::error title=gantry::no gantry release is built for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}; set build-from-source: true"
      exit 2
      ;;
  esac
  base="${GANTRY_DOWNLOAD_URL:-https://github.com/gantry-dev/gantry/releases/download}/v$version"
  archive="gantry-$target.tar.gz"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  for file in "$archive" "$archive.sha256"; do
    if ! curl --fail --silent --show-error --location --retry 3 --retry-delay 2 --output "$scratch/$file" "$base/$file"; then
      echo "::error title=gantry::cannot download $base/$file"
      exit 2
    fi
  done
  expected="$(cut -d ' ' -f 1 < "$scratch/$archive.sha256")"
  if command -v sha256sum > /dev/null; then
    actual="$(sha256sum "$scratch/$archive" | cut -d ' ' -f 1)"
  else
    actual="$(shasum -a 256 "$scratch/$archive" | cut -d ' ' -f 1)"
  fi
  if [ "$expected" != "$actual" ]; then
    echo "::error title=gantry::checksum mismatch for $archive: expected $expected, got $actual; refusing to install"
    exit 2
  fi
  mkdir -p "$install_root/bin"
  tar -xzf "$scratch/$archive" -C "$install_root/bin"
fi

"$install_root/bin/gantry" --version
if [ -n "${GITHUB_PATH:-}" ]; then
  echo "$install_root/bin" >> "$GITHUB_PATH"
fi
