#!/usr/bin/env bash
# capture-charon-fixtures.sh [OUT_DIR] — runs real scenarios on vpn-testbed.sh instances
# and saves, per scenario, exactly the bytes the gateway's charon wrote meanwhile:
#   OUT_DIR/SCENARIO.log         filelog, ike_name = yes
#   OUT_DIR/SCENARIO.noname.log  filelog, ike_name = no
# plus startup.log (daemon start), syslog-format.log and syslog-format.nopid.log (the
# same run as written by a real private rsyslogd). Default OUT_DIR:
# gateway/testdata/charon in this repository. Needs root; takes about two minutes
# (two half-open timeouts of 30 s after failed EAP logins, one dead peer).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TB=$HERE/vpn-testbed.sh
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$REPO/gateway/testdata/charon}
WORK=$(mktemp -d /tmp/tw-fixtures.XXXXXX)
NAME=""
DIR=""

log() { echo "capture: $*" >&2; }

cleanup() {
  if [ -n "$NAME" ]; then "$TB" down "$NAME" "$DIR" || true; fi
}
trap cleanup EXIT

size() { stat -c %s "$1" 2>>"$WORK/actions.log" || echo 0; }

# Byte offsets of the instance's logs; a scenario is the bytes between two marks.
declare -A MARK
mark() {
  MARK[log]=$(size "$DIR/gw/charon.log")
  MARK[noname]=$(size "$DIR/gw/charon-noname.log")
  MARK[syslog]=$(size "$DIR/gw/syslog.log")
  MARK[nopid]=$(size "$DIR/gw/syslog-nopid.log")
}

slice() { # FILE FROM TO
  tail -c +$(($2 + 1)) "$1" | head -c $(($3 - $2))
}

# wait_log PATTERN SECONDS: until the gateway log (since the last mark) has PATTERN.
wait_log() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if tail -c +$((MARK[log] + 1)) "$DIR/gw/charon.log" | grep -qF -- "$1"; then return 0; fi
    sleep 0.1
  done
  log "gave up waiting for '$1'"
  return 1
}

settle() { sleep 2; } # let trailing lines (responses, accounting) arrive

# save SCENARIO: write the bytes since the last mark, then mark again.
save() {
  local from_log=${MARK[log]} from_noname=${MARK[noname]}
  settle
  local to_log to_noname
  to_log=$(size "$DIR/gw/charon.log")
  to_noname=$(size "$DIR/gw/charon-noname.log")
  slice "$DIR/gw/charon.log" "$from_log" "$to_log" > "$OUT/$1.log"
  slice "$DIR/gw/charon-noname.log" "$from_noname" "$to_noname" > "$OUT/$1.noname.log"
  log "$1: $(wc -l < "$OUT/$1.log") lines"
  mark
}

start_instance() { # NAME [--radius]
  NAME=$1; shift
  DIR=$WORK/$NAME
  "$TB" up "$NAME" "$DIR" --syslog "$@"
  sleep 1.5 # the kernel-netlink "flags changed" lines of the new interfaces
}

stop_instance() {
  "$TB" down "$NAME" "$DIR"
  NAME=""
}

"$TB" install --syslog
mkdir -p "$OUT"

# --- instance 1: no RADIUS ------------------------------------------------------
start_instance fxa
MARK=([log]=0 [noname]=0 [syslog]=0 [nopid]=0)
save startup
SYS_FROM=${MARK[syslog]} NOPID_FROM=${MARK[nopid]}

"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_log "went offline" 10
save psk-ok

rc=0; "$TB" connect "$NAME" "$DIR" client2 rw-psk --psk wrong-psk 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "psk-wrong: expected exit 3, got $rc"; exit 1; }
wait_log "AUTH_FAILED" 5
save psk-wrong

"$TB" connect "$NAME" "$DIR" client1 rw-cert 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client1 2>>"$WORK/actions.log"
wait_log "went offline" 10
save cert-ok

"$TB" connect "$NAME" "$DIR" client2 rw-eap 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_log "went offline" 10
save eap-mschapv2-ok

rc=0; "$TB" connect "$NAME" "$DIR" client1 rw-eap --eap-password wrong-password 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "eap-mschapv2-wrong: expected exit 3, got $rc"; exit 1; }
# The gateway keeps the failed IKE_SA until charon's half-open timeout (30 s).
wait_log "deleting half open IKE_SA" 40
save eap-mschapv2-wrong

"$TB" connect "$NAME" "$DIR" client2 rw-psk 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" terminate "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_log "went offline" 10
save gateway-terminate

"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" kill-client "$NAME" "$DIR" client1
wait_log "went offline" 30
save dpd-lost
"$TB" start-client "$NAME" "$DIR" client1
sleep 1
mark

"$TB" connect "$NAME" "$DIR" client2 rw-cert 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" rekey "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_log "went offline" 10
save rekey

"$TB" connect "$NAME" "$DIR" client1 rw-psk 2>>"$WORK/actions.log"
"$TB" rekey "$NAME" "$DIR" client1 --by-client 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client1 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client1 --ike-only 2>>"$WORK/actions.log"
wait_log "went offline" 10
save rekey-by-client

settle
slice "$DIR/gw/syslog.log" "$SYS_FROM" "$(size "$DIR/gw/syslog.log")" > "$OUT/syslog-format.log"
slice "$DIR/gw/syslog-nopid.log" "$NOPID_FROM" "$(size "$DIR/gw/syslog-nopid.log")" > "$OUT/syslog-format.nopid.log"
stop_instance

# --- instance 2: FreeRADIUS (eap-radius, accounting = yes) ----------------------
start_instance fxb --radius
mark

"$TB" connect "$NAME" "$DIR" client2 rw-radius 2>>"$WORK/actions.log"
"$TB" curl "$NAME" "$DIR" client2 >/dev/null
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_log "went offline" 10
save radius-ok

rc=0; "$TB" connect "$NAME" "$DIR" client1 rw-radius --eap-password wrong-password 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 3 ] || { log "radius-wrong: expected exit 3, got $rc"; exit 1; }
wait_log "deleting half open IKE_SA" 40 || true
save radius-wrong

# IKEv1 (l2tp-psk): main mode comes up, the client's libipsec refuses the transport-mode
# CHILD_SA (NO_PROPOSAL_CHOSEN); the client then deletes the IKE_SA.
rc=0; "$TB" connect "$NAME" "$DIR" client2 l2tp-psk 2>>"$WORK/actions.log" || rc=$?
[ "$rc" -eq 5 ] || { log "ikev1-quick-mode-failed: expected exit 5, got $rc"; exit 1; }
"$TB" disconnect "$NAME" "$DIR" client2 2>>"$WORK/actions.log"
wait_log "deleting IKE_SA" 10
save ikev1-quick-mode-failed
stop_instance

log "fixtures in $OUT"
rm -rf "$WORK"
