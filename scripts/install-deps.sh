#!/usr/bin/env bash
# Installs the Debian packages edgellm needs to build and test, skipping what is already there.
# Usage: scripts/install-deps.sh [--test]   (--test adds the tools the test suite drives)
set -euo pipefail

packages=(build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libsodium-dev
          libcurl4-openssl-dev)
packages+=(libpcre2-dev) # user-defined PII patterns of the gateway (src/gateway)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(clang libclang-rt-14-dev unicode-data wrk curl)
  # The ARM64 build (make arm-test): cross compiler and libc, tests run under qemu-aarch64.
  packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  command -v python3 >/dev/null || packages+=(python3)
  packages+=(python3-jinja2) # the second reference of the chat-template test
  packages+=(emscripten chromium) # the WebAssembly build (make web) and its browser test
  packages+=(python3-jsonschema) # the independent validator of the structured-output tests
  packages+=(python3-torch) # the reference of the training gradients (tests/train_torch.py)
  packages+=(sentencepiece) # spm_train/spm_encode: the reference of the SentencePiece import
  packages+=(clang-format) # make format / make format-check (.clang-format)
  # The machine image may ship its own Node.js; Debian's npm conflicts with it.
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
