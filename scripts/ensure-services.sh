#!/usr/bin/env bash
# Make sure the Redis and RabbitMQ the tests need are reachable: start them when installed but stopped,
# install them (Debian packages, as root) when missing, and fail loudly when neither works. Never skip.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port seconds name
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  echo "error: $3 did not come up on 127.0.0.1:$1" >&2; return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: $1 is not installed and cannot be installed here (need root and apt-get)" >&2; exit 1
  fi
  echo "installing $1 ..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$(mktemp -d)" --logfile "${TMPDIR:-/tmp}/sandai-redis.log"
  wait_port 6379 20 Redis
fi

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "starting rabbitmq-server on 127.0.0.1:5672"
  rabbitmq-server -detached
  wait_port 5672 90 RabbitMQ
fi
echo "services: Redis 127.0.0.1:6379 and RabbitMQ 127.0.0.1:5672 are up"
