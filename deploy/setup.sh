#!/usr/bin/env bash
# One-time setup of the compose deployment (deploy/compose.yaml). It writes
# only under deploy/ and only what is missing or derived; run it again after
# adding a terminal to terminals.tsv (with clearing stopped, see README
# "Deploying"). Nothing it writes belongs in the repository (.gitignore).
#
#   secrets/   private keys, mode 0600 in a 0700 directory: the CA's, the NATS
#              servers' and the settlement API's TLS keys, clearing's NATS user
#              seed, each terminal's event key
#   config/    generated, not secret: certificates, the registry, the NATS
#              users and permissions, clearing's confirmation public key
#   state/     the services' data: clearing (store and embedded chain), each
#              nats-server's JetStream, each terminal's outbox
#   .env       the uid:gid the containers run as (never root)
#
# Needs openssl and a faregate binary: $FAREGATE, else ../bin/faregate
# (make build), else faregate on PATH. FAREGATE may be a command line, e.g. the
# image itself with deploy/ mounted at the same path:
#   FAREGATE="docker run --rm -u $(id -u):$(id -g) -v $PWD:$PWD -w $PWD faregate:local" ./setup.sh
#
# A shared chain (README "Deploying"): FAREGATE_SETUP_ETH_RPC=URL and
# FAREGATE_SETUP_CONTRACT=ADDR skip the bootstrap chain below and write the NATS
# users from that chain's registry (without them, a run writes them from its
# own bootstrap chain, which knows nothing of the shared chain's registrations).
#
# Extra DNS names for the NATS servers' certificate (gates outside the compose
# network): FAREGATE_SETUP_NATS_NAMES="nats.example.org,nats-a.example.org".
# It only applies when the certificate is made; remove config/nats/nats.pem to
# make it again.
set -euo pipefail
umask 077

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

die() { echo "setup: $*" >&2; exit 1; }

if [ -z "${FAREGATE:-}" ]; then
	if [ -x ../bin/faregate ]; then
		FAREGATE=$(cd .. && pwd)/bin/faregate
	elif command -v faregate >/dev/null; then
		FAREGATE=$(command -v faregate)
	else
		die "no faregate binary: run 'make build' in the repository, or set FAREGATE"
	fi
fi
command -v openssl >/dev/null || die "openssl is needed for the TLS certificates"

# fg runs faregate; $FAREGATE is split into words on purpose (a command line).
fg() { $FAREGATE "$@"; }

mkdir -p secrets/ca secrets/nats secrets/clearing secrets/terminals \
	config/nats config/clearing config/terminal \
	state/clearing state/nats-1 state/nats-2 state/nats-3
chmod 700 secrets

# --- TLS: one CA; a certificate for the three nats-servers (clients and
# routes, so it carries both serverAuth and clientAuth: routes verify each
# other with it) and one for the settlement API.
ca_key=secrets/ca/ca-key.pem
ca=config/ca.pem
if [ ! -s "$ca" ] || [ ! -s "$ca_key" ]; then
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$ca_key" -out "$ca" -days 3650 -subj "/CN=Faregate deployment CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	echo "setup: made the CA $ca"
fi
for d in config/nats config/clearing config/terminal; do
	cp "$ca" "$d/ca.pem"
done

# leaf CERT KEY EXTENDED_KEY_USAGE NAMES...: a P-256 certificate signed by the
# CA for the DNS names (and 127.0.0.1), unless CERT and KEY already exist.
leaf() {
	local cert=$1 key=$2 eku=$3
	shift 3
	[ -s "$cert" ] && [ -s "$key" ] && return 0
	local san="IP:127.0.0.1" n
	for n in "$@"; do san="$san,DNS:$n"; done
	local ext csr
	ext=$(mktemp) csr=$(mktemp)
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$eku" "$san" >"$ext"
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$key" -subj "/CN=$1" -out "$csr" 2>/dev/null
	openssl x509 -req -in "$csr" -CA "$ca" -CAkey "$ca_key" -set_serial "0x$(openssl rand -hex 16)" \
		-days 825 -extfile "$ext" -out "$cert" 2>/dev/null
	rm -f "$ext" "$csr"
	echo "setup: made $cert for $san"
}
IFS=, read -r -a extra_names <<<"${FAREGATE_SETUP_NATS_NAMES:-}"
leaf config/nats/nats.pem secrets/nats/nats-key.pem serverAuth,clientAuth \
	nats-1 nats-2 nats-3 localhost ${extra_names[@]+"${extra_names[@]}"}
leaf config/clearing/api.pem secrets/clearing/api-key.pem serverAuth clearing localhost

# --- Terminals: a key each (kept when present) and the registry entry.
entries=()
while read -r id operator stop rest; do
	case "$id" in '' | '#'*) continue ;; esac
	[ -n "$stop" ] && [ -z "${rest:-}" ] || die "terminals.tsv: want 'id operator stop', got '$id $operator $stop ${rest:-}'"
	mkdir -p "secrets/terminals/$id" "state/$id/outbox"
	entries+=("$(fg terminal keygen --key "secrets/terminals/$id/terminal.key" --id "$id" --operator "$operator" --stop "$stop" </dev/null)")
done <terminals.tsv
[ ${#entries[@]} -gt 0 ] || die "terminals.tsv lists no terminal"
joined=$(IFS=,; printf '%s' "${entries[*]}")
template=$(<registry.template.json)
printf '%s\n' "${template/@TERMINALS@/"$joined"}" >config/clearing/registry.json

# --- Clearing's confirmation key (made in its data dir when missing): the
# terminals are provisioned with its public half.
printf 'FAREGATE_CLEARING_KEY=%s\n' "$(fg clearing key --data state/clearing)" >config/terminal/clearing.env

if [ -n "${FAREGATE_SETUP_ETH_RPC:-}" ] || [ -n "${FAREGATE_SETUP_CONTRACT:-}" ]; then
	[ -n "${FAREGATE_SETUP_ETH_RPC:-}" ] && [ -n "${FAREGATE_SETUP_CONTRACT:-}" ] ||
		die "FAREGATE_SETUP_ETH_RPC and FAREGATE_SETUP_CONTRACT go together (the shared chain and its settlement contract)"
	fg nats config --eth-rpc "$FAREGATE_SETUP_ETH_RPC" --contract "$FAREGATE_SETUP_CONTRACT" \
		--clearing-seed secrets/clearing/clearing.nk --out config/nats/auth.conf
else
	# --- The chain. Clearing's embedded chain lives in state/clearing/chain and
	# is created, and the registry put on it (operators admitted, terminals
	# registered), by clearing itself at start. Run it once on its own embedded
	# NATS (a random loopback port) until it is up, then stop it: the NATS users
	# below are read from that chain, which only one process may hold.
	had_js=false
	[ -e state/clearing/jetstream ] && had_js=true
	log=state/bootstrap.log
	# (not through fg: $! must be faregate itself, not a subshell, for the signal)
	$FAREGATE clearing --data state/clearing --registry config/clearing/registry.json \
		--nats-listen 127.0.0.1:-1 --http 127.0.0.1:0 --log-format json >"$log" 2>&1 &
	pid=$!
	up=false
	for _ in $(seq 1 600); do
		if grep -q '"msg":"clearing running"' "$log"; then up=true; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if ! $up; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" || true
		cat "$log" >&2
		die "clearing did not come up on state/clearing (is the deployment's clearing still running? stop it first)"
	fi
	kill -TERM "$pid"
	wait "$pid" || { cat "$log" >&2; die "clearing (bootstrap) failed on stop"; }
	# The deployment's clearing uses the NATS cluster; the embedded server's store
	# was only for this run.
	$had_js || rm -rf state/clearing/jetstream

	# --- NATS users and permissions from the chain's registry (the real
	# mechanism, as for any external server): clearing's user seed is made when
	# missing; the nats-servers include config/nats/auth.conf.
	# deploy/nats/nats-N.conf enable JetStream and include this file: the
	# command's note that it enables none is for a file used alone.
	fg nats config --data state/clearing --clearing-seed secrets/clearing/clearing.nk --out config/nats/auth.conf \
		2> >(grep -v '^note: no --jetstream-dir' >&2)
fi

# --- Who the containers run as: the user running this script, or 10001 when
# that is root (the files the containers mount are then handed to it; the
# CA's private key, which no container mounts, stays root's).
uid=$(id -u) gid=$(id -g)
if [ "$uid" = 0 ]; then
	uid=10001 gid=10001
	chown -R "$uid:$gid" secrets/clearing secrets/nats secrets/terminals config state
fi
# The commit the image is built from (its build context has no .git).
commit=$(git -C "$here" rev-parse HEAD 2>/dev/null || true)
printf 'FAREGATE_UID=%s\nFAREGATE_GID=%s\nFAREGATE_COMMIT=%s\n' "$uid" "$gid" "$commit" >.env
chmod 644 .env config/ca.pem config/*/*.pem config/*/*.json config/*/*.conf config/*/*.env

echo "setup: done. Next: docker compose -f $here/compose.yaml up -d --build"
