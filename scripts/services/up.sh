#!/usr/bin/env bash
# The real services the tests marked `services` run against, started on this machine (as root):
# a one-node SLURM cluster (slurm.sh) and a PostgreSQL server (postgres.sh, when present).
# Messages go to stderr; stdout is the `export` lines that point the tests at them:
#
#   eval "$(sudo scripts/services/up.sh)" && make test
#
# Each service script is idempotent (a running service is left alone) and has a `stop`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

"$here/slurm.sh" up >&2
# the SLURM tests fail, rather than skip, when the cluster is not there
echo "export CNNZOO_TEST_SLURM=1"

if [ -x "$here/postgres.sh" ]; then
  url=$("$here/postgres.sh" up)
  # stdout is eval'ed by the caller: anything but one URL is a bug in postgres.sh, never a command
  case "$url" in
    postgresql*://*) ;;
    *) echo "up.sh: postgres.sh printed no database URL but: $url" >&2; exit 1 ;;
  esac
  case "$url" in
    *[[:space:]]*) echo "up.sh: postgres.sh printed more than a URL: $url" >&2; exit 1 ;;
  esac
  printf 'export CNNZOO_TEST_POSTGRES_URL=%q\n' "$url"
fi
