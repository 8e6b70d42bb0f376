#!/usr/bin/env bash
# capture-vici-fixtures.sh VICI_DUMP [OUT_DIR [SCENARIO...]] — runs real scenarios on a
# vpn-testbed.sh instance (with FreeRADIUS) and saves, per scenario, what the gateway's
# charon said on its VICI socket: OUT_DIR/SCENARIO.jsonl, one {"event", "message"} object
# per line, as printed by VICI_DUMP (`cargo build -p gateway --example vici-dump`; the
# binary is target/debug/examples/vici-dump). Each capture starts with the `list-sa`
# snapshot of the moment the dump connected. Default OUT_DIR: gateway/testdata/vici.
# With SCENARIO names, every scenario still runs (so that IKE_SA unique ids run on as in a
# whole capture) but only those files are written. Needs root; takes about two minutes
# (half-open timeouts after failed EAP logins, a dead peer).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TB=$HERE/vpn-testbed.sh
REPO=$(cd "$HERE/../.." && pwd)
DUMP=${1:?usage: capture-vici-fixtures.sh VICI_DUMP [OUT_DIR]}
OUT=${2:-$REPO/gateway/testdata/vici}
shift $(($# < 2 ? $# : 2))
KEEP=("$@")
WORK=$(mktemp -d /tmp/tw-vici-fixtures.XXXXXX)
CAPTURES=$WORK/captures
NAME=vfx
DIR=$WORK/$NAME
DUMP_PID=""

log() { echo "capture: $*" >&2; }

stop_dump() {
  if [ -n "$DUMP_PID" ]; then kill "$DUMP_PID" 2>/dev/null || true; wait "$DUMP_PID" 2>/dev/null || true; fi
  DUMP_PID=""
}

cleanup() { stop_dump; "$TB" down "$NAME" "$DIR" || true; }
trap cleanup EXIT

# begin SCENARIO: start a fresh dump into CAPTURES/SCENARIO.jsonl.
begin() {
  "$DUMP" "$DIR/gw/charon.vici" > "$CAPTURES/$1.jsonl" 2>>"$WORK/dump.err" &
  DUMP_PID=$!
  CURRENT=$1
  sleep 0.5
}

# wait_event PATTERN SECONDS: until the current capture has a line with PATTERN.
wait_event() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -qF -- "$1" "$CAPTURES/$CURRENT.jsonl" && return 0
    sleep 0.1
  done
  log "$CURRENT: gave up waiting for '$1'"
  return 1
}

end() { sleep 1.5; stop_dump; log "$CURRENT: $(wc -l < "$CAPTURES/$CURRENT.jsonl") events"; }

"$TB" install
mkdir -p "$OUT" "$CAPTURES"
"$TB" up "$NAME" "$DIR" --radius
sleep 1

begin psk-ok
"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin psk-wrong
rc=0; "$TB" connect "$NAME" "$DIR" client2 rw-psk --psk wrong-psk 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "psk-wrong: expected exit 3, got $rc"; exit 1; }
wait_event '"event":"ike-updown"' 10
end

begin cert-ok
"$TB" connect "$NAME" "$DIR" client1 rw-cert 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin eap-mschapv2-ok
"$TB" connect "$NAME" "$DIR" client2 rw-eap 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin eap-mschapv2-wrong
rc=0; "$TB" connect "$NAME" "$DIR" client1 rw-eap --eap-password wrong-password 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "eap-mschapv2-wrong: expected exit 3, got $rc"; exit 1; }
# The gateway keeps the failed IKE_SA until charon's half-open timeout (30 s).
wait_event 'deleting half open IKE_SA' 40
end

begin radius-ok
"$TB" connect "$NAME" "$DIR" client2 rw-radius 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin radius-wrong
rc=0; "$TB" connect "$NAME" "$DIR" client1 rw-radius --eap-password wrong-password 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "radius-wrong: expected exit 3, got $rc"; exit 1; }
wait_event '"event":"ike-updown"' 10
end

begin gateway-terminate
"$TB" connect "$NAME" "$DIR" client2 rw-psk 2>>"$WORK/actions.log"
"$TB" terminate "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin dpd-lost
"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
wait_event '"up":"yes"' 10
"$TB" kill-client "$NAME" "$DIR" client1
# DPD: charon gives up after its retransmits, then reports the IKE_SA down.
wait_event 'giving up after' 30
end
"$TB" start-client "$NAME" "$DIR" client1

begin rekey
"$TB" connect "$NAME" "$DIR" client2 rw-cert 2>>"$WORK/actions.log"
"$TB" rekey "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

begin rekey-by-client
"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" rekey "$NAME" "$DIR" client1 --by-client 2>>"$WORK/actions.log"
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

# Two users are connected before the dump starts: the capture opens with their list-sa
# snapshot (what an agent sees when it (re)connects), then client1 leaves.
"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" connect "$NAME" "$DIR" client2 rw-eap 2>>"$WORK/actions.log"
begin reconnect-snapshot
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

# charon restarts under a connected user: the dump sees the socket close; a new dump
# afterwards sees an empty snapshot.
begin restart-before
"$TB" restart-gateway "$NAME" "$DIR"
end
begin restart-after
"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
wait_event '"up":"yes"' 10
end

# IKEv1 L2TP/IPsec (client2, l2tp-psk): main mode comes up, quick mode fails (the
# client's libipsec has no transport mode and answers NO_PROPOSAL_CHOSEN); the client
# then deletes its IKE_SA, as an L2TP client gives up.
begin ikev1-quick-mode-failed
rc=0; "$TB" connect "$NAME" "$DIR" client2 l2tp-psk 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 5 ] || { log "ikev1-quick-mode-failed: expected exit 5, got $rc"; exit 1; }
wait_event 'NO_PROPOSAL_CHOSEN' 10
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_event '"state":"DELETING"' 10
end

# The gateway terminates connection rw-psk by name: client1 (logged in since
# restart-after, in the snapshot) and client2 both go.
"$TB" connect "$NAME" "$DIR" client2 rw-psk 2>>"$WORK/actions.log"
begin gateway-terminate-by-conn
"$TB" terminate-conn "$NAME" "$DIR" rw-psk 2>>"$WORK/actions.log"
wait_event 'sending DELETE for IKE_SA' 10
end

if [ "${#KEEP[@]}" -eq 0 ]; then
  cp "$CAPTURES"/*.jsonl "$OUT"/
else
  for scenario in "${KEEP[@]}"; do
    [ -f "$CAPTURES/$scenario.jsonl" ] || { log "no scenario $scenario"; exit 1; }
    cp "$CAPTURES/$scenario.jsonl" "$OUT"/
  done
fi
log "fixtures in $OUT"
rm -rf "$WORK"
