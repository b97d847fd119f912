#!/usr/bin/env bash
# Build influxd (InfluxDB 2.x OSS) from its Go module source with the machine's Go and Rust.
#
#   build-influxdb.sh VERSION DEST_DIR
#
# Everything (Go module cache, Go build cache, cargo registry, libflux build) lives under DEST_DIR,
# and the result is DEST_DIR/bin/influxd. Flux's Rust library (libflux) is compiled by
# InfluxData's pkg-config wrapper (github.com/influxdata/pkg-config), which cgo calls as
# `pkg-config flux` when it is first on PATH: it copies the flux module's libflux/ sources to
# GOCACHE and runs `cargo build --release` there.
set -euo pipefail

VERSION="${1:?usage: build-influxdb.sh VERSION DEST_DIR}"
DEST="${2:?usage: build-influxdb.sh VERSION DEST_DIR}"
PKG_CONFIG_VERSION="${INFLUXDB_PKG_CONFIG_VERSION:-}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
export GOPATH="$DEST/gopath"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$DEST/gocache"
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local
export CARGO_HOME="$DEST/cargo-home"
export CGO_ENABLED=1
# libflux enables deny(warnings) through its default "strict" feature; a newer rustc than the one
# flux was written for adds lints, so cap them (at "allow") instead of failing the build.
RUSTC_WRAPPER="$(cd "$(dirname "$0")" && pwd)/rustc-cap-lints.sh"
export RUSTC_WRAPPER
# flux pins Rust 1.72 in rust-toolchain.toml; that toolchain cannot be downloaded here, so tell
# rustup to use the machine's active toolchain instead.
if [ -z "${RUSTUP_TOOLCHAIN:-}" ] && command -v rustup >/dev/null 2>&1; then
  RUSTUP_TOOLCHAIN="$(cd / && rustup show active-toolchain 2>/dev/null | awk 'NR==1{print $1}')"
  [ -n "$RUSTUP_TOOLCHAIN" ] && export RUSTUP_TOOLCHAIN
fi

step() { printf '[build-influxdb] %s %s\n' "$(date +%H:%M:%S)" "$*"; }

step "downloading github.com/influxdata/influxdb/v2@$VERSION"
modjson="$(cd "$DEST" && go mod download -json "github.com/influxdata/influxdb/v2@$VERSION")"
moddir="$(printf '%s\n' "$modjson" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$moddir" ] || { echo "module directory not found in: $modjson" >&2; exit 1; }

# The module has a replace directive, so `go install pkg@version` refuses it: build in a writable copy.
src="$DEST/src"
if [ ! -f "$src/.copied" ]; then
  step "copying module source to $src"
  rm -rf "$src"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  touch "$src/.copied"
fi

cd "$src"
if [ -z "$PKG_CONFIG_VERSION" ]; then
  PKG_CONFIG_VERSION="$(awk '$1=="github.com/influxdata/pkg-config"{print $2}' go.mod)"
fi
step "building InfluxData's pkg-config wrapper ($PKG_CONFIG_VERSION)"
mkdir -p "$DEST/wrapper"
GOBIN="$DEST/wrapper" go install "github.com/influxdata/pkg-config@${PKG_CONFIG_VERSION:-latest}"
export PATH="$DEST/wrapper:$PATH"
export PKG_CONFIG="$DEST/wrapper/pkg-config"
export PKG_CONFIG_LOG="$DEST/pkg-config.log"

step "downloading the Go modules influxd needs"
go list -deps -tags sqlite_foreign_keys,sqlite_json ./cmd/influxd >/dev/null

# Build libflux first (cgo would do it through the wrapper anyway; doing it here shows progress
# and the cargo output directly). The wrapper reuses this copy because the directory already exists.
fluxver="$(awk '$1=="github.com/influxdata/flux"{print $2}' go.mod)"
fluxdir="$(go mod download -json "github.com/influxdata/flux@$fluxver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
fluxcopy="$GOCACHE/pkgconfig/github.com/influxdata/flux@$fluxver"
if [ ! -d "$fluxcopy" ]; then
  step "copying flux $fluxver sources to $fluxcopy"
  mkdir -p "$(dirname "$fluxcopy")"
  rm -rf "$fluxcopy.tmp"
  cp -r "$fluxdir" "$fluxcopy.tmp"
  chmod -R u+w "$fluxcopy.tmp"
  mv "$fluxcopy.tmp" "$fluxcopy"
fi
step "building libflux (Rust, release, LTO) with $(cargo --version) — the slowest step"
(cd "$fluxcopy/libflux" && cargo build --release --target x86_64-unknown-linux-gnu)

step "checking the wrapper: pkg-config --cflags --libs flux"
(cd "$fluxdir/libflux/go/libflux" && pkg-config --cflags --libs flux)

step "building influxd $VERSION (go build, tags sqlite_foreign_keys,sqlite_json, no UI assets)"
mkdir -p "$DEST/bin"
# -v prints each package as it is compiled: the progress the caller shows
go build -v -tags sqlite_foreign_keys,sqlite_json \
  -ldflags "-s -w -X main.version=$VERSION -X main.commit=module" \
  -o "$DEST/bin/influxd.tmp" ./cmd/influxd
mv "$DEST/bin/influxd.tmp" "$DEST/bin/influxd"
step "built $DEST/bin/influxd"
