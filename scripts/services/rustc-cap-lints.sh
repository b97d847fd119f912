#!/bin/sh
# cargo RUSTC_WRAPPER used to build Flux's libflux with a newer rustc than it was written for:
# libflux's default "strict" feature turns every warning into an error (deny(warnings)), and new
# rustc releases add lints. Cap lint levels at "allow" (as cargo does for dependencies) on every
# rustc call that cargo did not cap already. (RUSTFLAGS is not enough: with --target it skips
# host artifacts such as flux-core compiled as a build-dependency.)
rustc="$1"
shift
for arg in "$@"; do
  case "$arg" in
    --cap-lints|--cap-lints=*) exec "$rustc" "$@" ;;
  esac
done
exec "$rustc" --cap-lints=allow "$@"
