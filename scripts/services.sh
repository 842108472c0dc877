# Sourced by ./run-tests: starts a private PostgreSQL on 127.0.0.1 for the tests that need a real
# server, and stops it (by pid) when the calling script exits. Skipped when XUNJIAN_TEST_PG_URL is
# already set (point it at your own server) or XUNJIAN_NO_SERVICES=1.
if [ -z "${XUNJIAN_TEST_PG_URL:-}" ] && [ "${XUNJIAN_NO_SERVICES:-0}" != 1 ]; then
  pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$pgbin" ]; then
    echo ">> installing Debian package: postgresql"
    ${SUDO:-} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq postgresql >/dev/null
    pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  pgdir="$(mktemp -d /tmp/xunjian-pg.XXXXXX)"
  chown postgres "$pgdir" 2>/dev/null || true
  pgport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_pg "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 \
    || { echo "error: initdb failed, see $pgdir/initdb.log" >&2; exit 1; }
  as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { echo "error: PostgreSQL did not start, see $pgdir/server.log" >&2; exit 1; }
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres xunjian_test
  export XUNJIAN_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$pgport/xunjian_test"
  _pg_pid="$(head -n 1 "$pgdir/data/postmaster.pid")"
  _stop_pg() { kill -TERM "$_pg_pid" 2>/dev/null; for _ in $(seq 50); do kill -0 "$_pg_pid" 2>/dev/null || break; sleep 0.2; done; rm -rf "$pgdir"; }
  trap _stop_pg EXIT
  echo ">> PostgreSQL $(basename "$(dirname "$pgbin")") on 127.0.0.1:$pgport (pid $_pg_pid)"
fi

# A private redis-server on 127.0.0.1 for the scale-out tests (shared crawl frontier), without
# persistence; stopped by pid when the calling script exits. Skipped when XUNJIAN_TEST_REDIS_URL is
# already set or XUNJIAN_NO_SERVICES=1.
if [ -z "${XUNJIAN_TEST_REDIS_URL:-}" ] && [ "${XUNJIAN_NO_SERVICES:-0}" != 1 ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo ">> installing Debian package: redis-server"
    ${SUDO:-} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq redis-server >/dev/null
  fi
  redisdir="$(mktemp -d /tmp/xunjian-redis.XXXXXX)"
  redisport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  redis-server --bind 127.0.0.1 --port "$redisport" --save '' --appendonly no --dir "$redisdir" \
    --daemonize yes --pidfile "$redisdir/redis.pid" --logfile "$redisdir/redis.log" \
    || { echo "error: redis-server did not start, see $redisdir/redis.log" >&2; exit 1; }
  for _ in $(seq 50); do [ -s "$redisdir/redis.pid" ] && break; sleep 0.1; done
  _redis_pid="$(cat "$redisdir/redis.pid" 2>/dev/null)"
  [ -n "$_redis_pid" ] || { echo "error: redis-server did not start, see $redisdir/redis.log" >&2; exit 1; }
  export XUNJIAN_TEST_REDIS_URL="redis://127.0.0.1:$redisport/0"
  _stop_redis() { kill -TERM "$_redis_pid" 2>/dev/null; for _ in $(seq 50); do kill -0 "$_redis_pid" 2>/dev/null || break; sleep 0.1; done; rm -rf "$redisdir"; }
  if [ -n "${_pg_pid:-}" ]; then trap '_stop_redis; _stop_pg' EXIT; else trap _stop_redis EXIT; fi
  echo ">> redis-server on 127.0.0.1:$redisport (pid $_redis_pid)"
fi
