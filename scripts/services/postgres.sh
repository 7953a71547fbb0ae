#!/usr/bin/env bash
# A PostgreSQL server on this machine for shared Optuna studies: the tests marked `services`
# (through CNNZOO_TEST_POSTGRES_URL) and trying several search workers on one study.
#
#   sudo scripts/services/postgres.sh          # up (idempotent); prints the database's URL
#   sudo scripts/services/postgres.sh stop     # down (only a server this script started)
#   scripts/services/postgres.sh status        # exit 0 when the server answers
#   scripts/services/postgres.sh url           # print the URL
#
#   export CNNZOO_TEST_POSTGRES_URL=$(sudo scripts/services/postgres.sh)
#
# Debian's postgresql package (installed when missing), its default cluster (`pg_lsclusters`;
# created when there is none) run as the postgres user without systemd, listening on localhost
# only. A role and a database for cnnzoo (both `cnnzoo` and `cnnzoo_test` by default, password
# login over TCP); the URL is printed on stdout, everything else goes to stderr.
set -euo pipefail

ROLE=${CNNZOO_PG_USER:-cnnzoo}
PASSWORD=${CNNZOO_PG_PASSWORD:-cnnzoo}
DATABASE=${CNNZOO_PG_DATABASE:-cnnzoo_test}
HOST=localhost
# marks a server this script started, so that `stop` leaves a server it found running alone
STATE=/var/lib/cnnzoo-postgres

say() { echo "postgres.sh: $*" >&2; }

# the newest installed server's version and its first cluster: "<version> <name> <port>"
cluster() {
  command -v pg_lsclusters >/dev/null || return 1
  pg_lsclusters -h 2>/dev/null | sort -k1,1V | tail -n 1 | awk '{print $1, $2, $3}'
}

port() {
  local found
  found=$(cluster) && [ -n "$found" ] && echo "${found##* }" || echo 5432
}

url() { echo "postgresql+psycopg2://$ROLE:$PASSWORD@$HOST:$(port)/$DATABASE"; }

answering() { pg_isready -q -h "$HOST" -p "$(port)" 2>/dev/null; }

install_packages() {
  if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v pg_ctlcluster >/dev/null; then
    return
  fi
  say "installing postgresql (Debian's package)"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
  "${apt[@]}" update >/dev/null
  # no systemd here: the package's own start fails harmlessly; the cluster is started below
  "${apt[@]}" install --no-install-recommends postgresql >/dev/null || true
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || { say "installing postgresql failed"; exit 1; }
}

as_postgres() { runuser -u postgres -- "$@"; }

sql() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$(port)" -tA "$@"; }

up() {
  if [ "$(id -u)" -ne 0 ]; then
    if answering; then url; return; fi
    say "run as root (sudo): it installs and starts the server"; exit 1
  fi
  install_packages
  if [ -z "$(cluster)" ]; then
    local version
    version=$(basename "$(ls -d /usr/lib/postgresql/*/ | sort -V | tail -n 1)")
    say "creating cluster $version/main"
    pg_createcluster "$version" main >&2
  fi
  read -r version name port <<<"$(cluster)"
  if ! answering; then
    say "starting cluster $version/$name on port $port"
    mkdir -p "$STATE"
    # the cluster's own log: /var/log/postgresql/postgresql-$version-$name.log
    # its notes ("Removed stale pid file.", the systemd hint) go to stderr: stdout is the URL only
    pg_ctlcluster "$version" "$name" start >&2
    touch "$STATE/started-$version-$name"
    for _ in $(seq 100); do answering && break; sleep 0.1; done
    answering || { say "the server did not answer; see /var/log/postgresql/"; exit 1; }
  fi
  if [ "$(sql -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    sql -c "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '$PASSWORD'"
  fi
  if [ "$(sql -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    sql -c "CREATE DATABASE \"$DATABASE\" OWNER \"$ROLE\""
  fi
  say "up: database $DATABASE for role $ROLE on $HOST:$port"
  url
}

stop() {
  local found version name port
  found=$(cluster) || { say "no cluster"; return; }
  read -r version name port <<<"$found"
  if ! answering; then
    rm -f "$STATE/started-$version-$name"
    say "cluster $version/$name is not running"
    return
  fi
  if [ ! -e "$STATE/started-$version-$name" ]; then
    say "cluster $version/$name was not started by this script: left alone"
    return
  fi
  pg_ctlcluster "$version" "$name" stop >&2
  rm -f "$STATE/started-$version-$name"
  say "stopped cluster $version/$name"
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  status) answering ;;
  url) url ;;
  *) say "usage: $0 [up|stop|status|url]"; exit 2 ;;
esac
