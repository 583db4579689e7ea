#!/usr/bin/env bash
# Creates the RabbitMQ users and permissions ansinh uses, idempotently (safe to run again).
# Development and CI: passwords equal user names. In production set ANSINH_PASSWORD_<USER>
# variables or change the passwords afterwards with `rabbitmqctl change_password`.
#
#   scripts/rabbitmq-setup.sh [VHOST]        (default vhost "/")
#
# Users (and what RabbitMQ lets each do; names follow the default prefix "ansinh"):
#   ansinh-engine        the engine: declares the topology, consumes commands, publishes
#                        events, replies and dead letters
#   ansinh-admin         program rules and budgets: publishes commands, reads its reply queue
#   ansinh-agency-056    the Khánh Hòa agency: publishes commands, reads its reply queue
#   ansinh-bank-<BIN>    one per bank in data/banks.tsv: its own instruction queue bound to
#                        the events exchange, publishes settlement reports
# Roles (which commands each may send) are ansinh's, in the [bus] users of the config
# (config/dev.toml maps these users).
set -euo pipefail
vhost="${1:-/}"
here="$(cd "$(dirname "$0")" && pwd)"
ctl() { rabbitmqctl -q "$@" </dev/null; }  # rabbitmqctl reads stdin: keep it off the loop's input

ctl await_startup >/dev/null 2>&1 || { echo "RabbitMQ is not running (start it: rabbitmq-server -detached)" >&2; exit 1; }
if ! ctl list_vhosts | grep -qx -- "$vhost"; then
  ctl add_vhost "$vhost"
fi
existing="$(ctl list_users | awk '{print $1}')"

user() { # name configure write read
  local name="$1" var password
  var="ANSINH_PASSWORD_$(echo "$name" | tr 'a-z-' 'A-Z_')"
  password="${!var:-$name}"
  if ! grep -qx -- "$name" <<<"$existing"; then
    ctl add_user "$name" "$password" >/dev/null
  fi
  ctl set_permissions -p "$vhost" "$name" "$2" "$3" "$4" >/dev/null
  echo "user $name: configure '$2' write '$3' read '$4'"
}

# Test runs use prefixes like ansinh-t-<n>: every pattern matches any prefix starting "ansinh".
user ansinh-engine '^(ansinh.*|amq\.gen.*)$' '^(ansinh.*|amq\.gen.*|amq\.default)$' '^(ansinh.*|amq\.gen.*)$'
user ansinh-admin '^amq\.gen.*$' '^ansinh[^.]*\.commands$' '^amq\.gen.*$'
user ansinh-agency-056 '^amq\.gen.*$' '^ansinh[^.]*\.commands$' '^amq\.gen.*$'
tail -n +2 "$here/../data/banks.tsv" | cut -f1 | while read -r bin; do
  user "ansinh-bank-$bin" "^(amq\.gen.*|ansinh[^.]*\.bank\.$bin)$" "^(amq\.gen.*|ansinh[^.]*\.commands|ansinh[^.]*\.bank\.$bin)$" "^(amq\.gen.*|ansinh[^.]*\.events|ansinh[^.]*\.bank\.$bin)$"
done
echo "done: vhost $vhost"
