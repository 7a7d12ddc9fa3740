#!/usr/bin/env bash
# testenv.sh installs and starts the real services GEF's tests run against:
# a private PostgreSQL cluster and a MinIO server, both bound to 127.0.0.1
# only, plus the Debian tools some tests call (docker-registry, chromium,
# debootstrap, cdo, ncgen). It is idempotent: servers already answering are
# reused. internal/testenv holds the same addresses as defaults.
#
# Usage:
#   scripts/testenv.sh [start]  install what is missing, start the servers,
#                               print the environment as `export` lines
#   scripts/testenv.sh env      only print the `export` lines, for
#                               eval "$(scripts/testenv.sh env)"
#   scripts/testenv.sh stop     stop the PostgreSQL cluster and MinIO it started
#
# Progress goes to stderr, the environment to stdout. Set GEF_TESTENV_DIR to
# keep the servers' data elsewhere than /tmp/gef-testenv.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_MODULE=github.com/minio/minio

TESTENV_DIR=${GEF_TESTENV_DIR:-/tmp/gef-testenv}
PG_PORT=55432
PG_DATA=$TESTENV_DIR/pg
PG_SOCKETS=$TESTENV_DIR/pg-run
PG_LOG=$TESTENV_DIR/pg.log
MINIO_ADDR=127.0.0.1:59000
MINIO_CONSOLE_ADDR=127.0.0.1:59001
MINIO_DATA=$TESTENV_DIR/minio
MINIO_LOG=$TESTENV_DIR/minio.log
MINIO_PID=$TESTENV_DIR/minio.pid
MINIO_USER=gefminio
MINIO_PASSWORD=gefminio-secret
APT_LOG=$TESTENV_DIR/apt.log
# How long to wait for a server to answer, in seconds.
WAIT_SECONDS=${GEF_TESTENV_WAIT:-120}

log() { echo "testenv: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
	if is_root; then
		"$@"
	else
		sudo "$@"
	fi
}

print_env() {
	cat <<EOF
export GEF_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=disable'
export GEF_TEST_MINIO_ENDPOINT='${MINIO_ADDR}'
export GEF_TEST_MINIO_ACCESS_KEY='${MINIO_USER}'
export GEF_TEST_MINIO_SECRET_KEY='${MINIO_PASSWORD}'
EOF
}

# tail_log shows the end of a server's log after it failed.
tail_log() {
	if [ -r "$1" ]; then
		log "last lines of $1:"
		tail -n 20 "$1" >&2 || true
	fi
}

# ---- Debian packages ---------------------------------------------------

# pg_bin prints the directory holding PostgreSQL's server programs, or
# fails. An initdb in PATH may be a symlink to it.
pg_bin() {
	local initdb dir
	if initdb=$(command -v initdb 2>/dev/null); then
		dir=$(dirname "$(readlink -f "$initdb")")
		if [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_isready" ]; then
			echo "$dir"
			return 0
		fi
	fi
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
		if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_isready" ]; then
			echo "$dir"
			return 0
		fi
	done
	return 1
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

ensure_packages() {
	local missing=()
	pg_bin >/dev/null || missing+=(postgresql)
	have curl || missing+=(curl ca-certificates)
	[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
	have chromium || missing+=(chromium)
	have debootstrap || missing+=(debootstrap)
	have cdo || missing+=(cdo)
	have ncgen || missing+=(netcdf-bin)
	if [ ${#missing[@]} -eq 0 ]; then
		log "Debian packages: all present"
		return 0
	fi
	mkdir -p "$TESTENV_DIR"
	log "installing with apt-get: ${missing[*]} (log: $APT_LOG)"
	# Keep package scripts from starting services (the registry, the
	# system's PostgreSQL cluster): tests start what they need themselves.
	local policy=/usr/sbin/policy-rc.d added_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
		as_root chmod 755 "$policy"
		added_policy=1
		trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	local rc=0
	{
		as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q &&
			as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
	} >"$APT_LOG" 2>&1 || rc=$?
	if [ -n "$added_policy" ]; then
		as_root rm -f "$policy"
		trap - EXIT
	fi
	if [ "$rc" -ne 0 ]; then
		tail_log "$APT_LOG"
		die "apt-get failed with status $rc"
	fi
}

# ---- PostgreSQL ----------------------------------------------------------

# as_pg runs a PostgreSQL tool as the user owning the cluster: initdb and
# postgres refuse to run as root.
as_pg() {
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_owner() {
	if is_root; then echo postgres; else id -un; fi
}

pg_ready() {
	"$1/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -t 2
}

start_postgres() {
	local bin
	bin=$(pg_bin) || die "initdb not found even after installing postgresql"
	if pg_ready "$bin"; then
		log "PostgreSQL: already answering on 127.0.0.1:$PG_PORT"
		return 0
	fi
	local owner version
	owner=$(pg_owner)
	version=$("$bin/initdb" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
	mkdir -p "$TESTENV_DIR"
	chmod 755 "$TESTENV_DIR"
	if [ -f "$PG_DATA/PG_VERSION" ] && [ "$(cat "$PG_DATA/PG_VERSION")" != "$version" ]; then
		log "PostgreSQL: $PG_DATA is from version $(cat "$PG_DATA/PG_VERSION"), not $version; recreating it"
		rm -rf "$PG_DATA"
	fi
	if [ ! -f "$PG_DATA/PG_VERSION" ]; then
		log "PostgreSQL: creating a cluster in $PG_DATA"
		rm -rf "$PG_DATA" # a half-made one from an interrupted run
		mkdir -p "$PG_DATA"
		chown "$owner" "$PG_DATA"
		chmod 700 "$PG_DATA"
		as_pg "$bin/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 --no-locale --no-sync >"$TESTENV_DIR/initdb.log" 2>&1 ||
			{
				tail_log "$TESTENV_DIR/initdb.log"
				die "initdb failed"
			}
		echo "include_if_exists = 'gef-testenv.conf'" >>"$PG_DATA/postgresql.conf"
	fi
	# Written on every start, so a changed setting here reaches old clusters.
	cat >"$PG_DATA/gef-testenv.conf" <<EOF
# Written by scripts/testenv.sh: a throwaway cluster tuned for tests.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKETS'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF
	chown "$owner" "$PG_DATA/gef-testenv.conf"
	mkdir -p "$PG_SOCKETS"
	chown "$owner" "$PG_SOCKETS"
	touch "$PG_LOG"
	chown "$owner" "$PG_LOG"

	log "PostgreSQL: starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
	# -w makes pg_ctl wait, with a deadline, until the server accepts
	# connections or has exited, and fail in the latter case.
	as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECONDS" start >/dev/null ||
		{
			tail_log "$PG_LOG"
			die "PostgreSQL did not start"
		}
	# And it answers over TCP, where the tests connect.
	local deadline=$((SECONDS + WAIT_SECONDS))
	until pg_ready "$bin"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail_log "$PG_LOG"
			die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within ${WAIT_SECONDS}s"
		fi
		sleep 0.2
	done
	log "PostgreSQL: ready"
}

stop_postgres() {
	local bin
	if [ ! -f "$PG_DATA/postmaster.pid" ]; then
		log "PostgreSQL: not running from $PG_DATA"
		return 0
	fi
	bin=$(pg_bin) || die "pg_ctl not found"
	log "PostgreSQL: stopping the cluster in $PG_DATA"
	as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null
}

# ---- MinIO ---------------------------------------------------------------

ensure_go_in_path() {
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		PATH=$PATH:/usr/local/go/bin
	fi
}

# minio_bin prints the path of the minio binary, or fails.
minio_bin() {
	local found gobin gopath
	if found=$(command -v minio 2>/dev/null); then
		echo "$found"
		return 0
	fi
	command -v go >/dev/null 2>&1 || return 1
	gobin=$(go env GOBIN)
	if [ -n "$gobin" ] && [ -x "$gobin/minio" ]; then
		echo "$gobin/minio"
		return 0
	fi
	gopath=$(go env GOPATH)
	if [ -x "${gopath%%:*}/bin/minio" ]; then
		echo "${gopath%%:*}/bin/minio"
		return 0
	fi
	return 1
}

ensure_minio() {
	ensure_go_in_path
	if minio_bin >/dev/null; then
		return 0
	fi
	command -v go >/dev/null 2>&1 || die "no minio binary and no go to build one"
	log "MinIO: building $MINIO_MODULE@$MINIO_VERSION with go install (takes several minutes)"
	# Outside the repository, so its go.mod plays no part.
	(cd / && go install "$MINIO_MODULE@$MINIO_VERSION") >"$TESTENV_DIR/minio-build.log" 2>&1 ||
		{
			tail_log "$TESTENV_DIR/minio-build.log"
			die "go install of minio failed"
		}
	minio_bin >/dev/null || die "go install succeeded but no minio binary was found"
}

minio_ready() {
	curl -sf -m 2 -o /dev/null "http://$MINIO_ADDR/minio/health/ready"
}

# minio_pid prints the pid of the MinIO this script started, if it runs.
minio_pid() {
	local pid
	[ -f "$MINIO_PID" ] || return 1
	pid=$(cat "$MINIO_PID")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# The pid may have been reused by something else since.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q minio || return 1
	echo "$pid"
}

start_minio() {
	if minio_ready; then
		log "MinIO: already answering on $MINIO_ADDR"
		return 0
	fi
	local bin pid
	if pid=$(minio_pid); then
		log "MinIO: pid $pid exists but does not answer; stopping it"
		stop_minio
	fi
	ensure_minio
	bin=$(minio_bin)
	mkdir -p "$MINIO_DATA"
	log "MinIO: starting $bin on $MINIO_ADDR (log: $MINIO_LOG)"
	MINIO_ROOT_USER=$MINIO_USER MINIO_ROOT_PASSWORD=$MINIO_PASSWORD MINIO_BROWSER=off MINIO_UPDATE=off \
		setsid nohup "$bin" server --quiet --address "$MINIO_ADDR" --console-address "$MINIO_CONSOLE_ADDR" "$MINIO_DATA" \
		</dev/null >"$MINIO_LOG" 2>&1 &
	pid=$!
	echo "$pid" >"$MINIO_PID"
	local deadline=$((SECONDS + WAIT_SECONDS))
	until minio_ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail_log "$MINIO_LOG"
			die "MinIO exited while starting"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail_log "$MINIO_LOG"
			die "MinIO did not answer on $MINIO_ADDR within ${WAIT_SECONDS}s"
		fi
		sleep 0.2
	done
	log "MinIO: ready (pid $pid)"
}

stop_minio() {
	local pid
	if ! pid=$(minio_pid); then
		log "MinIO: not running from $MINIO_PID"
		rm -f "$MINIO_PID"
		return 0
	fi
	log "MinIO: stopping pid $pid"
	kill "$pid"
	local deadline=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "MinIO: pid $pid ignored SIGTERM for 30s; killing it"
			kill -9 "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	rm -f "$MINIO_PID"
}

# ---- main ----------------------------------------------------------------

case "${1:-start}" in
start)
	mkdir -p "$TESTENV_DIR"
	ensure_packages
	start_postgres
	start_minio
	print_env
	;;
env)
	print_env
	;;
stop)
	stop_postgres
	stop_minio
	;;
*)
	echo "usage: $0 [start|env|stop]" >&2
	exit 2
	;;
esac
