#!/usr/bin/env bash
# Creates the RabbitMQ users and permissions ansinh uses, idempotently (safe to run again: it
# only changes what differs, so a second run takes a few seconds).
# Development and CI: passwords equal user names. In production set ANSINH_PASSWORD_<USER>
# variables or change the passwords afterwards with `rabbitmqctl change_password`.
#
#   scripts/rabbitmq-setup.sh [VHOST [PREFIX ...]]     (default vhost "/", prefix "ansinh")
#
# Sharded (ARCHITECTURE.md "Shards"), give every shard's prefix, <namespace>.<shard>, e.g.
#   scripts/rabbitmq-setup.sh / ansinh.north ansinh.central ansinh.south
# so that each shard's events exchange gets the topic permissions below: a user without topic
# permissions on an exchange may bind any key there, so a shard left out would let an agency
# or a bank bind `#` on its events exchange.
#
# Users, and what RabbitMQ lets each do (PREFIX stands for bus.prefix; the queue and exchange
# patterns match any prefix starting "ansinh", so test runs with prefixes like ansinh-t-<n>
# work; the topic permissions name one exchange, PREFIX.events, so run the script once per
# prefix in use):
#   ansinh-engine        the engine: declares the topology, consumes commands, publishes
#                        events, replies and dead letters
#   ansinh-admin         program rules and budgets: publishes commands, reads its reply queue
#                        (to PREFIX.commands, and in a sharded deployment of namespace NS to
#                        NS.route, NS.oneoff and NS.<shard>.commands; the agency too)
#   ansinh-agency-056    the Khánh Hòa agency (provinces 056 and 058, as in config/dev.toml):
#                        publishes commands, reads its reply queue, and binds its own queues
#                        (server-named amq.gen-*, or durable PREFIX.agency-056.<name>) to
#                        PREFIX.events with the keys of its provinces only:
#                        beneficiary.enrolled.<p>, budget.funded.<p>, payout_batch.submitted.<p>,
#                        standard_level.set.<p> and standard_level.set.national
#   ansinh-bank-<BIN>    one per bank in data/banks.tsv: its own instruction queue
#                        PREFIX.bank.<BIN> (and amq.gen-* queues) bound to PREFIX.events with the
#                        keys of its BIN only: payout.<status>.<BIN>, settlement_item.rejected.<BIN>;
#                        publishes settlement reports
#   ansinh-auditor       reads everything published: binds its own queues (amq.gen-*, or durable
#                        PREFIX.auditor.<name>) to PREFIX.events with any key (`#`) and to
#                        PREFIX.checkpoints
# The topic permissions on PREFIX.events are what keeps an agency or a bank from binding `#`
# and reading other provinces' beneficiaries or other banks' payouts (events/README.md,
# "Publishing"). Roles (which commands each may send) are ansinh's, in the [bus] users of the
# config (config/dev.toml maps these users).
set -euo pipefail
vhost="${1:-/}"
shift || true
prefixes=("$@")
[ ${#prefixes[@]} -gt 0 ] || prefixes=(ansinh)
here="$(cd "$(dirname "$0")" && pwd)"
ctl() { rabbitmqctl -q "$@" </dev/null; }  # rabbitmqctl reads stdin: keep it off the loop's input

ctl await_startup >/dev/null 2>&1 || { echo "RabbitMQ is not running (start it: rabbitmq-server -detached)" >&2; exit 1; }
# Sharded deployments (ARCHITECTURE.md "Shards") route one-off batches through a consistent-hash
# exchange; enabling an enabled plugin is a no-op.
if ! rabbitmq-plugins -q list -e rabbitmq_consistent_hash_exchange </dev/null 2>/dev/null | grep -q 'rabbitmq_consistent_hash_exchange'; then
  rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange </dev/null >/dev/null
fi
echo "plugin rabbitmq_consistent_hash_exchange: enabled"
if ! ctl list_vhosts | grep -qx -- "$vhost"; then
  ctl add_vhost "$vhost"
fi
existing="$(ctl list_users | awk '{print $1}')"
permissions="$(ctl list_permissions -p "$vhost")"
topics="$(ctl list_topic_permissions -p "$vhost")"
tab=$'\t'

user() { # name configure write read
  local name="$1" var password
  var="ANSINH_PASSWORD_$(echo "$name" | tr 'a-z-' 'A-Z_')"
  password="${!var:-$name}"
  if ! grep -qx -- "$name" <<<"$existing"; then
    ctl add_user "$name" "$password" >/dev/null
  fi
  if ! grep -qxF -- "$name$tab$2$tab$3$tab$4" <<<"$permissions"; then
    ctl set_permissions -p "$vhost" "$name" "$2" "$3" "$4" >/dev/null
  fi
  echo "user $name: configure '$2' write '$3' read '$4'"
}

topic() { # name write read: which routing keys the user may publish to and bind on each PREFIX.events
  local events
  for prefix in "${prefixes[@]}"; do
    events="$prefix.events"
    if ! grep -qxF -- "$1$tab$events$tab$2$tab$3" <<<"$topics"; then
      ctl set_topic_permissions -p "$vhost" "$1" "$events" "$2" "$3" >/dev/null
    fi
    echo "user $1: on $events publish keys '$2', bind keys '$3'"
  done
}

# Test runs use prefixes like ansinh-t-<n>: every queue and exchange pattern matches any prefix
# starting "ansinh".
user ansinh-engine '^(ansinh.*|amq\.gen.*)$' '^(ansinh.*|amq\.gen.*|amq\.default)$' '^(ansinh.*|amq\.gen.*)$'
# Commands: PREFIX.commands unsharded; sharded (namespace NS), the national NS.route and
# NS.oneoff, and a shard's own NS.<shard>.commands.
commands='ansinh[^.]*(\.[^.]+)?\.commands|ansinh[^.]*\.(route|oneoff)'
user ansinh-admin '^amq\.gen.*$' "^($commands)$" '^amq\.gen.*$'
own='ansinh[^.]*\.agency-056\.[^.]+'
# A shard's own exchanges and queues are under <namespace>.<shard>: the optional segment.
shard='(\.[^.]+)?'
user ansinh-agency-056 "^(amq\.gen.*|$own)$" "^($commands|amq\.gen.*|$own)$" "^(amq\.gen.*|$own|ansinh[^.]*$shard\.events)$"
topic ansinh-agency-056 '^$' '^((beneficiary\.enrolled|budget\.funded|payout_batch\.submitted|standard_level\.set)\.(056|058)|standard_level\.set\.national)$'
own='ansinh[^.]*\.auditor\.[^.]+'
user ansinh-auditor "^(amq\.gen.*|$own)$" "^(amq\.gen.*|$own)$" "^(amq\.gen.*|$own|ansinh[^.]*$shard\.(events|checkpoints))$"
tail -n +2 "$here/../data/banks.tsv" | cut -f1 | while read -r bin; do
  user "ansinh-bank-$bin" "^(amq\.gen.*|ansinh[^.]*$shard\.bank\.$bin)$" "^(amq\.gen.*|ansinh[^.]*$shard\.commands|ansinh[^.]*$shard\.bank\.$bin)$" "^(amq\.gen.*|ansinh[^.]*$shard\.events|ansinh[^.]*$shard\.bank\.$bin)$"
  topic "ansinh-bank-$bin" '^$' "^(payout\.(instructed|settled|failed|returned|written_off)|settlement_item\.rejected)\.$bin$"
done
echo "done: vhost $vhost, topic permissions on ${prefixes[*]/%/.events}"
