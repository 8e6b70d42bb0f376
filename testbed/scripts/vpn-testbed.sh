#!/usr/bin/env bash
# vpn-testbed.sh — a real strongSwan IKEv2 (and IKEv1) gateway and two road-warrior clients
# in network namespaces, for tunnelwatch's tests and for capturing real charon logs.
#
# Usage:
#   vpn-testbed.sh install [--syslog]
#   vpn-testbed.sh up NAME DIR [--radius [--radius-acct-port PORT]] [--syslog] [--pool RANGE] [--nginx]
#                    [--weak-crypto]
#   vpn-testbed.sh connect NAME DIR CLIENT CONN [--psk WRONG | --eap-password WRONG]
#                         (CONN rw-weak: after up --weak-crypto)
#   vpn-testbed.sh disconnect NAME DIR CLIENT [--ike-only]
#   vpn-testbed.sh terminate NAME DIR CLIENT
#   vpn-testbed.sh terminate-conn NAME DIR CONN
#   vpn-testbed.sh kill-client NAME DIR CLIENT
#   vpn-testbed.sh start-client NAME DIR CLIENT
#   vpn-testbed.sh rekey NAME DIR CLIENT [--by-client]
#   vpn-testbed.sh curl NAME DIR CLIENT [PATH]
#   vpn-testbed.sh move NAME DIR CLIENT ADDRESS
#   vpn-testbed.sh restart-gateway NAME DIR
#   vpn-testbed.sh down NAME DIR
#
# NAME: short unique id of one testbed instance ([A-Za-z0-9], at most 8 chars); every
#       namespace is called tw-NAME-{gw,c1,c2,api}, so instances can run in parallel.
# DIR:  the instance's working directory (configs, certificates, logs, sockets, pids).
# CLIENT: client1 | client2.   CONN: rw-psk | rw-cert | rw-eap | rw-radius | l2tp-psk (the
#       gateway's connection; each client has a connection of the same name for it).
#       l2tp-psk is IKEv1 as L2TP/IPsec clients (Windows, macOS) use it: main mode with one
#       shared PSK, the client's address as its identity, a transport-mode CHILD_SA for
#       UDP 1701. libipsec does tunnel mode only, so its IKE_SA comes up and its quick
#       mode fails (`connect` exits 5).
#
# Topology (every interface lives inside the instance's namespaces, none in the root
# namespace, so all instances use the same documentation-range addresses):
#
#   tw-NAME-c1 eth0 192.0.2.11 ─┐
#                               ├─ br0 192.0.2.1  [tw-NAME-gw]  api 198.51.100.1 ─── eth0 198.51.100.10:8080 [tw-NAME-api]
#   tw-NAME-c2 eth0 192.0.2.12 ─┘        virtual IP pool 10.99.0.0/24 (rw-pool)
#
# Exit status: 0 ok; 1 testbed error (message on stderr); for `connect`: 3 when the
# gateway refused the authentication (AUTHENTICATION_FAILED / EAP failure), 5 when the
# IKE_SA was established but its CHILD_SA (IKEv1: quick mode) failed, 4 when the
# connection failed for another reason.
#
# terminate: the gateway terminates the client's IKE_SAs one by one (by unique id);
# terminate-conn: the gateway terminates every IKE_SA of connection CONN by name
# (`swanctl --terminate --ike CONN`), as a responder would by mistake for one user.
#
# Facts about strongSwan 5.9.8 on this kind of machine that the script relies on:
# - The kernel has XFRM but no ESP, so ESP runs in userspace: the kernel-libipsec
#   plugin (a TUN device ipsec0). libipsec only handles UDP-encapsulated ESP, hence
#   `encap = yes` on every connection, and it must be loaded BEFORE kernel-netlink
#   (Debian ships it with `load = no`, so we use load_modular = no and a list).
# - strongSwan settings files take ONE `key = value` per line: `auth = psk id = x` on
#   one line silently becomes auth="psk id = x".
# - charon hard-codes /var/run/charon.pid: each daemon runs inside `ip netns exec`
#   (which gives a private mount namespace) with its own directory bind-mounted
#   over /run, and its own strongswan.conf via STRONGSWAN_CONF.
# - Daemons get reparented to PID 1, which reaps them late: a pid in state Z is dead.

set -euo pipefail

SCRIPT_NAME=vpn-testbed
CHARON=/usr/lib/ipsec/charon
PACKAGES=(strongswan-charon strongswan-swanctl strongswan-pki libcharon-extra-plugins
  libcharon-extauth-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins
  freeradius freeradius-utils nginx-light tcpdump)
SYSLOG_PACKAGES=(rsyslog)

# Addresses (documentation ranges; identical in every instance, isolated by namespaces).
GW_OUTER=192.0.2.1
GW_INNER=198.51.100.1
API_ADDR=198.51.100.10
API_PORT=8080
API_NET=198.51.100.0/24
POOL=10.99.0.0/24
declare -A CLIENT_ADDR=([client1]=192.0.2.11 [client2]=192.0.2.12)
declare -A CLIENT_NS_SUFFIX=([client1]=c1 [client2]=c2)
# Credentials. Identities are user@METHOD.vpn.test so the gateway's connections can
# match on the remote identity; EAP users have their own EAP identities.
declare -A PSK=([client1]=psk-secret-client1 [client2]=psk-secret-client2)
# IKEv1 L2TP/IPsec: one PSK shared by every client, as such gateways are set up.
L2TP_PSK=l2tp-shared-psk
declare -A EAP_USER=([client1]=alice [client2]=bob)        # checked by charon
declare -A RADIUS_USER=([client1]=carol [client2]=dave)    # checked by FreeRADIUS
declare -A EAP_PASSWORD=([alice]=alice-pass [bob]=bob-pass [carol]=carol-pass [dave]=dave-pass)
RADIUS_SECRET="radius-shared-secret"

die() { echo "$SCRIPT_NAME: error: $*" >&2; exit 1; }
log() { echo "$SCRIPT_NAME: $*" >&2; }

usage() { sed -n '5,17p' "$0" >&2; exit 1; }

python_bin() { if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3 || die "python3 not found"; fi; }

# ---------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------

missing_packages() {
  local p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
      echo "$p"
    fi
  done
}

cmd_install() {
  local wanted=("${PACKAGES[@]}")
  if [ "${1:-}" = --syslog ]; then wanted+=("${SYSLOG_PACKAGES[@]}"); fi
  [ "$(id -u)" = 0 ] || die "must run as root (installs packages, creates network namespaces)"
  command -v dpkg-query >/dev/null || die "dpkg-query not found: needs a Debian system"
  local missing
  mapfile -t missing < <(missing_packages "${wanted[@]}")
  [ "${#missing[@]}" -eq 0 ] && return 0

  # Several test processes may call install at once: one apt-get at a time.
  exec 9>/run/lock/tunnelwatch-vpn-testbed-install.lock
  flock -w 900 9 || die "timed out waiting for another '$SCRIPT_NAME install'"
  mapfile -t missing < <(missing_packages "${wanted[@]}")
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  # apt's postinst scripts would start freeradius (and rsyslog) system-wide; a
  # policy-rc.d that exits 101 forbids starting services during the install.
  local created_policy=no
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=yes
  fi
  local out rc=0
  out=$(mktemp)
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" >"$out" 2>&1
  }
  apt_install || rc=$?
  # Only refresh the package lists when the install failed for lack of (current)
  # lists: unknown package, no candidate, or 404s for versions the mirror dropped.
  if [ "$rc" -ne 0 ] && grep -qE 'Unable to locate package|has no installation candidate|404 +Not Found|Failed to fetch|apt-get update' "$out"; then
    log "package lists missing or stale: running apt-get update"
    if apt-get update >"$out.update" 2>&1; then
      rc=0; apt_install || rc=$?
    else
      cat "$out.update" >> "$out"
    fi
  fi
  if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" -ne 0 ]; then
    tail -n 15 "$out" >&2
    rm -f "$out" "$out.update"
    mapfile -t missing < <(missing_packages "${wanted[@]}")
    die "apt-get install failed (exit $rc); still missing: ${missing[*]}"
  fi
  rm -f "$out" "$out.update"
  mapfile -t missing < <(missing_packages "${wanted[@]}")
  [ "${#missing[@]}" -eq 0 ] || die "packages still not installed after apt-get: ${missing[*]}"
  return 0
}

# ---------------------------------------------------------------------------------
# helpers shared by the subcommands
# ---------------------------------------------------------------------------------

set_instance() { # NAME DIR
  NAME=$1
  [[ "$NAME" =~ ^[A-Za-z0-9]{1,8}$ ]] || die "NAME must be 1-8 letters/digits, got '$NAME'"
  [ -n "$2" ] || die "DIR must not be empty"
  DIR=$(realpath -m "$2")
  NS_GW=tw-$NAME-gw
  NS_API=tw-$NAME-api
  # A client `move`d to another address connects from there.
  local c
  for c in client1 client2; do
    if [ -f "$DIR/moved-$c" ]; then CLIENT_ADDR[$c]=$(cat "$DIR/moved-$c"); fi
  done
}

client_ns() { # CLIENT
  [ -n "${CLIENT_NS_SUFFIX[$1]:-}" ] || die "CLIENT must be client1 or client2, got '$1'"
  echo "tw-$NAME-${CLIENT_NS_SUFFIX[$1]}"
}

all_ns() { echo "$NS_GW tw-$NAME-c1 tw-$NAME-c2 $NS_API"; }

ns_exists() { [ -e "/run/netns/$1" ]; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# swanctl against the daemon whose directory is $1 (gw, client1, client2).
swanctl_at() {
  local d=$DIR/$1; shift
  SWANCTL_DIR=$d/swanctl STRONGSWAN_CONF=$d/strongswan.conf \
    swanctl "$@" --uri "unix://$d/charon.vici"
}

record_pid() { echo "$1 $2" >> "$DIR/pids"; } # ROLE PID

pid_of() { awk -v r="$1" '$1 == r { p = $2 } END { if (p) print p }' "$DIR/pids" 2>/dev/null || true; }

# alive PID: running and not a zombie.
alive() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Is PID one of ours: alive and inside one of this instance's namespaces?
ours() {
  alive "$1" || return 1
  local ns; ns=$(ip netns identify "$1" 2>/dev/null || true)
  [[ " $(all_ns) " == *" $ns "* ]] && [ -n "$ns" ]
}

wait_dead() { # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

stop_pid() { # PID
  ours "$1" || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait_dead "$1" 5 && return 0
  kill -KILL "$1" 2>/dev/null || true
  wait_dead "$1" 5 || log "pid $1 did not die"
}

# ---------------------------------------------------------------------------------
# up: configuration writers
# ---------------------------------------------------------------------------------

# strongswan.conf for one charon (ROLE: gw, client1, client2).
write_strongswan_conf() {
  local role=$1 d=$DIR/$1 radius=$2 syslog=$3 acct_port=${4:-1813}
  local plugins="random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey"
  plugins+=" sha1 sha2 hmac gcm aes kdf curve25519 attr"
  # kernel-libipsec BEFORE kernel-netlink: userspace ESP (the kernel has no ESP).
  plugins+=" kernel-libipsec kernel-netlink socket-default vici eap-identity eap-mschapv2"
  [ "$radius" = yes ] && plugins+=" eap-radius"
  {
    cat <<EOF
# Generated by vpn-testbed.sh. NOTE: one key = value per line.
charon {
  load_modular = no
  load = $plugins
  # Quick retransmits so dead peers are found within ~10 s (1 + 1.5 + 2.25 s).
  retransmit_tries = 2
  retransmit_timeout = 1.0
  retransmit_base = 1.5
  # Tests log in many times a minute from one address (10 wrong passwords): no DoS
  # protection's cookies and blocks of half-open IKE_SAs.
  dos_protection = no
  cookie_threshold = 1000
  block_threshold = 1000
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
EOF
    if [ "$radius" = yes ]; then
      cat <<EOF
    eap-radius {
      accounting = yes
      servers {
        local {
          address = 127.0.0.1
          secret = $RADIUS_SECRET
          auth_port = 1812
          acct_port = $acct_port
        }
      }
    }
EOF
    fi
    cat <<EOF
  }
  filelog {
    main {
      path = $d/charon.log
      time_format = %b %e %T
      ike_name = yes
      append = yes
      flush_line = yes
      default = 1
    }
EOF
    if [ "$role" = gw ]; then
      cat <<EOF
    noname {
      path = $d/charon-noname.log
      time_format = %b %e %T
      ike_name = no
      append = yes
      flush_line = yes
      default = 1
    }
EOF
    fi
    echo "  }"
    if [ "$syslog" = yes ]; then
      # Real syslog(3) to /dev/log, which (in charon's private mount namespace) is a
      # symlink to the private rsyslogd's socket.
      cat <<EOF
  syslog {
    identifier = charon
    daemon {
      default = 1
      ike_name = yes
    }
  }
EOF
    fi
    echo "}"
  } > "$d/strongswan.conf"
}

make_swanctl_dirs() {
  local s=$1/swanctl sub
  # All the folders swanctl --load-all looks at (missing ones give warnings).
  for sub in x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12 conf.d; do
    mkdir -p "$s/$sub"
  done
}

make_pki() {
  local p=$DIR/pki c
  mkdir -p "$p"
  # pki's own plugin list (the default one tries the tpm plugin and complains).
  printf 'pki {\n  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey sha1 sha2\n}\n' > "$p/strongswan.conf"
  local -x STRONGSWAN_CONF=$p/strongswan.conf
  pki --gen --type ecdsa --size 256 --outform pem > "$p/ca.key"
  pki --self --ca --lifetime 30 --in "$p/ca.key" --type ecdsa \
    --dn "C=XX, O=tunnelwatch testbed, CN=testbed CA $NAME" --outform pem > "$p/ca.pem"
  pki --gen --type ecdsa --size 256 --outform pem > "$p/gw.key"
  pki --pub --in "$p/gw.key" --type ecdsa | pki --issue --lifetime 30 \
    --cacert "$p/ca.pem" --cakey "$p/ca.key" --dn "C=XX, O=tunnelwatch testbed, CN=gw.vpn.test" \
    --san gw.vpn.test --san "$GW_OUTER" --flag serverAuth --flag ikeIntermediate --outform pem > "$p/gw.pem"
  for c in client1 client2; do
    pki --gen --type ecdsa --size 256 --outform pem > "$p/$c.key"
    pki --pub --in "$p/$c.key" --type ecdsa | pki --issue --lifetime 30 \
      --cacert "$p/ca.pem" --cakey "$p/ca.key" --dn "C=XX, O=tunnelwatch testbed, CN=$c@cert.vpn.test" \
      --san "$c@cert.vpn.test" --flag clientAuth --outform pem > "$p/$c.pem"
  done
}

# Gateway connections. They all share one pool; the gateway picks the connection
# in IKE_AUTH by the client's identity (*@psk.vpn.test, *@cert.vpn.test, ...).
write_gw_swanctl() {
  local radius=$1 s=$DIR/gw/swanctl c
  cp "$DIR/pki/ca.pem" "$s/x509ca/ca.pem"
  cp "$DIR/pki/gw.pem" "$s/x509/gw.pem"
  cp "$DIR/pki/gw.key" "$s/ecdsa/gw.key"
  gw_conn() { # NAME LOCAL_AUTH REMOTE_AUTH REMOTE_ID [EAP]
    cat <<EOF
  $1 {
    version = 2
    local_addrs = $GW_OUTER
    # libipsec only handles UDP-encapsulated ESP.
    encap = yes
    pools = rw-pool
    # DPD every 3 s; with the retransmit settings a dead peer is gone in ~8 s.
    dpd_delay = 3s
EOF
    if [ "${WEAK:-no}" = yes ] && [ "$1" = rw-psk ]; then
      echo "    proposals = default, 3des-sha1-modp1024"
    fi
    cat <<EOF
    local {
      auth = $2
      id = gw.vpn.test
EOF
    [ "$2" = pubkey ] && echo "      certs = gw.pem"
    cat <<EOF
    }
    remote {
      auth = $3
      id = $4
EOF
    [ -n "${5:-}" ] && echo "      eap_id = %any"
    cat <<EOF
    }
    children {
      net {
        local_ts = $API_NET
EOF
    if [ "${WEAK:-no}" = yes ] && [ "$1" = rw-psk ]; then
      echo "        esp_proposals = default, 3des-sha1-modp1024"
    fi
    cat <<EOF
      }
    }
  }
EOF
  }
  {
    echo "# Generated by vpn-testbed.sh. NOTE: one key = value per line."
    echo "connections {"
    gw_conn rw-psk psk psk '*@psk.vpn.test'
    gw_conn rw-cert pubkey pubkey '*@cert.vpn.test'
    gw_conn rw-eap pubkey eap-mschapv2 '*@eap.vpn.test' eap
    [ "$radius" = yes ] && gw_conn rw-radius pubkey eap-radius '*@radius.vpn.test' eap
    # IKEv1 L2TP/IPsec (main mode, PSK, the client's address as its identity; no virtual
    # IP: L2TP/PPP would assign one). libipsec has no transport mode, so quick mode fails.
    cat <<EOF
  l2tp-psk {
    version = 1
    local_addrs = $GW_OUTER
    encap = yes
    local {
      auth = psk
      id = $GW_OUTER
    }
    remote {
      auth = psk
    }
    children {
      l2tp {
        mode = transport
        local_ts = dynamic[udp/1701]
        remote_ts = dynamic[udp/1701]
      }
    }
  }
}
pools {
  rw-pool {
    addrs = $POOL
  }
}
secrets {
EOF
    for c in client1 client2; do
      printf '  ike-%s {\n    id = %s@psk.vpn.test\n    secret = "%s"\n  }\n' "$c" "$c" "${PSK[$c]}"
      printf '  eap-%s {\n    id = %s\n    secret = "%s"\n  }\n' "${EAP_USER[$c]}" "${EAP_USER[$c]}" "${EAP_PASSWORD[${EAP_USER[$c]}]}"
    done
    # Owned by the addresses only, so it never counts among the keys tried for an IKEv2
    # identity (`tried 1 shared key ...`).
    printf '  ike-l2tp {\n    id-gw = %s\n    id-c1 = %s\n    id-c2 = %s\n    secret = "%s"\n  }\n' \
      "$GW_OUTER" "${CLIENT_ADDR[client1]}" "${CLIENT_ADDR[client2]}" "$L2TP_PSK"
    echo "}"
  } > "$s/swanctl.conf"
}

write_client_swanctl() {
  local c=$1 s=$DIR/$1/swanctl
  cp "$DIR/pki/ca.pem" "$s/x509ca/ca.pem"
  cp "$DIR/pki/$c.pem" "$s/x509/$c.pem"
  cp "$DIR/pki/$c.key" "$s/ecdsa/$c.key"
  client_conn() { # NAME LOCAL_AUTH REMOTE_AUTH LOCAL_ID [EAP_ID]
    cat <<EOF
  $1 {
    version = 2
    remote_addrs = $GW_OUTER
    encap = yes
    # Ask the gateway for a virtual IP from its pool.
    vips = 0.0.0.0
    local {
      auth = $2
      id = $4
EOF
    [ "$2" = pubkey ] && echo "      certs = $c.pem"
    [ -n "${5:-}" ] && echo "      eap_id = $5"
    cat <<EOF
    }
    remote {
      auth = $3
      id = gw.vpn.test
    }
    children {
      net {
        remote_ts = $API_NET
      }
    }
  }
EOF
  }
  {
    echo "# Generated by vpn-testbed.sh. NOTE: one key = value per line."
    echo "connections {"
    client_conn rw-psk psk psk "$c@psk.vpn.test"
    client_conn rw-cert pubkey pubkey "$c@cert.vpn.test"
    client_conn rw-eap eap-mschapv2 pubkey "$c@eap.vpn.test" "${EAP_USER[$c]}"
    client_conn rw-radius eap-mschapv2 pubkey "$c@radius.vpn.test" "${RADIUS_USER[$c]}"
    # Proposes only what the seed's crypto recommendations retire (up --weak-crypto lets
    # the gateway's rw-psk accept it).
    cat <<EOF
  rw-weak {
    version = 2
    remote_addrs = $GW_OUTER
    encap = yes
    vips = 0.0.0.0
    proposals = 3des-sha1-modp1024
    local {
      auth = psk
      id = $c@psk.vpn.test
    }
    remote {
      auth = psk
      id = gw.vpn.test
    }
    children {
      net {
        remote_ts = $API_NET
        esp_proposals = 3des-sha1-modp1024
      }
    }
  }
EOF
    cat <<EOF
  l2tp-psk {
    version = 1
    remote_addrs = $GW_OUTER
    encap = yes
    local {
      auth = psk
      id = ${CLIENT_ADDR[$c]}
    }
    remote {
      auth = psk
      id = $GW_OUTER
    }
    children {
      l2tp {
        mode = transport
        local_ts = dynamic[udp/1701]
        remote_ts = dynamic[udp/1701]
      }
    }
  }
EOF
    echo "}"
    echo "include conf.d/*.conf"
  } > "$s/swanctl.conf"
  write_client_secrets "$c" "" ""
}

# The client's secrets (conf.d/secrets.conf); a non-empty PSK/EAP argument replaces
# the right one (used for the wrong-credential logins).
write_client_secrets() { # CLIENT PSK_OVERRIDE EAP_OVERRIDE
  local c=$1 psk=${2:-${PSK[$1]}} eu=${EAP_USER[$1]} ru=${RADIUS_USER[$1]}
  local ep=${3:-${EAP_PASSWORD[${EAP_USER[$1]}]}} rp=${3:-${EAP_PASSWORD[${RADIUS_USER[$1]}]}}
  cat > "$DIR/$c/swanctl/conf.d/secrets.conf" <<EOF
secrets {
  ike-self {
    id = $c@psk.vpn.test
    secret = "$psk"
  }
  eap-self {
    id = $eu
    secret = "$ep"
  }
  eap-radius-self {
    id = $ru
    secret = "$rp"
  }
  ike-l2tp-self {
    id-gw = $GW_OUTER
    id-self = ${CLIENT_ADDR[$c]}
    secret = "${2:-$L2TP_PSK}"
  }
}
EOF
}

# ---------------------------------------------------------------------------------
# up: processes
# ---------------------------------------------------------------------------------

# start_daemon ROLE NS LOGFILE COMMAND...: detached (setsid, no inherited stdio, so a
# caller waiting for our output does not wait for the daemons); pid into DIR/pids.
# `ip netns exec` and setsid exec (no fork), so $! is the daemon's own pid.
start_daemon() {
  local role=$1 ns=$2 out=$3; shift 3
  setsid ip netns exec "$ns" "$@" </dev/null >>"$out" 2>&1 &
  local pid=$!
  record_pid "$role" "$pid"
  echo "$pid"
}

# nginx as the API: /v1/* answers JSON; access logs in `combined` ($DIR/api/access.log)
# and as JSON with nginx's variable names ($DIR/api/access.json, escape=json).
write_nginx_conf() {
  local d=$DIR/api
  mkdir -p "$d/tmp"
  cat > "$d/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 64; }
http {
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  log_format tw_json escape=json '{"time_iso8601":"\$time_iso8601","msec":"\$msec","remote_addr":"\$remote_addr","request_method":"\$request_method","request_uri":"\$request_uri","host":"\$host","server_addr":"\$server_addr","server_port":"\$server_port","status":"\$status","body_bytes_sent":"\$body_bytes_sent","request_time":"\$request_time","request_id":"\$request_id","http_user_agent":"\$http_user_agent"}';
  server {
    listen $API_ADDR:$API_PORT;
    access_log $d/access.log combined;
    access_log $d/access.json tw_json;
    root $d/www;
    location /v1/ {
      default_type application/json;
      return 200 '{"ok":true,"uri":"\$uri"}\n';
    }
  }
}
NGINX
}

start_charon() { # ROLE NS SYSLOG
  local role=$1 ns=$2 syslog=${3:-no} d=$DIR/$1
  mkdir -p "$d/run"
  # A charon killed with SIGKILL leaves its pid file; while init has not reaped the
  # zombie, the new charon would take it for a running daemon and exit.
  rm -f "$d/charon.vici" "$d/run/charon.pid"
  local setup='mount --bind "$1/run" /run'
  if [ "$syslog" = yes ]; then
    # glibc's syslog(3) always writes to /dev/log. Give charon (only) a private /dev
    # with the few nodes it needs and /dev/log -> the private rsyslogd's socket.
    setup+=' && mount -t tmpfs -o mode=755 tmpfs /dev && mknod -m 666 /dev/null c 1 3'
    setup+=' && mknod -m 666 /dev/zero c 1 5 && mknod -m 666 /dev/random c 1 8'
    setup+=' && mknod -m 666 /dev/urandom c 1 9 && mkdir /dev/net && mknod -m 666 /dev/net/tun c 10 200'
    setup+=' && ln -s "$1/syslog.sock" /dev/log'
  fi
  local pid
  pid=$(STRONGSWAN_CONF=$d/strongswan.conf start_daemon "$role-charon" "$ns" "$d/charon.out" \
    sh -c "$setup && exec $CHARON" sh "$d")
  local i
  for ((i = 0; i < 100; i++)); do
    [ -S "$d/charon.vici" ] && break
    alive "$pid" || { tail -n 20 "$d/charon.out" >&2; die "charon ($role) exited during start-up"; }
    sleep 0.1
  done
  [ -S "$d/charon.vici" ] || die "charon ($role): no VICI socket $d/charon.vici after 10 s"
  local out
  for ((i = 0; i < 50; i++)); do
    if out=$(swanctl_at "$role" --load-all --noprompt 2>&1); then break; fi
    sleep 0.2
  done
  if ! grep -q 'successfully loaded' <<<"$out" || grep -qiE 'failed|error' <<<"$out"; then
    echo "$out" >&2
    die "swanctl --load-all failed for $role"
  fi
}

start_radius() {
  local r=$DIR/gw/radius
  rm -rf "$r"
  cp -a /etc/freeradius/3.0 "$r"
  mkdir -p "$r/log" "$r/run"
  # Private paths; run as root (the instance's DIR is not readable by user freerad).
  sed -i -e "s|^raddbdir = .*|raddbdir = $r|" -e "s|^logdir = .*|logdir = $r/log|" \
    -e "s|^run_dir = .*|run_dir = $r/run|" \
    -e 's|^\(\s*\)user = freerad|\1# user = freerad|' -e 's|^\(\s*\)group = freerad|\1# group = freerad|' \
    "$r/radiusd.conf"
  # The stock eap module needs TLS certificates that --no-install-recommends does not
  # create: MSCHAPv2 (and MD5) only.
  rm -f "$r/mods-enabled/eap"
  cat > "$r/mods-enabled/eap" <<'EOF'
eap {
  default_eap_type = mschapv2
  timer_expire = 60
  max_sessions = ${max_requests}
  md5 {
  }
  mschapv2 {
  }
}
EOF
  cat > "$r/clients.conf" <<EOF
client localhost {
  ipaddr = 127.0.0.1
  secret = $RADIUS_SECRET
  require_message_authenticator = no
}
EOF
  # Users go into mods-config/files/authorize (not the legacy `users` symlink target
  # in some layouts; the wrong file gives "No NT-Password").
  local auth=$r/mods-config/files/authorize u
  {
    for u in "${RADIUS_USER[@]}"; do
      printf '%s Cleartext-Password := "%s"\n\n' "$u" "${EAP_PASSWORD[$u]}"
    done
    cat "$auth"
  } > "$auth.new"
  mv "$auth.new" "$auth"
  local pid
  pid=$(start_daemon radius "$NS_GW" "$r/radius.out" freeradius -X -d "$r")
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q 'Ready to process requests' "$r/radius.out" 2>/dev/null && return 0
    alive "$pid" || { tail -n 30 "$r/radius.out" >&2; die "freeradius exited during start-up"; }
    sleep 0.1
  done
  die "freeradius not ready after 10 s (see $r/radius.out)"
}

start_rsyslog() {
  local s=$DIR/gw/rsyslog
  mkdir -p "$s"
  rm -f "$DIR/gw/syslog.sock"
  cat > "$s/rsyslog.conf" <<EOF
global(workDirectory="$s" localHostname="gw")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$DIR/gw/syslog.sock" RateLimit.Interval="0" UsePIDFromSystem="on")
# syslog.log: the classic file format; the tag gets the sender's pid from the socket
# (UsePIDFromSystem), as in "charon[1234]:". charon itself calls openlog() without
# LOG_PID, so its own tag is just "charon:", which syslog-nopid.log shows.
template(name="nopid" type="string" string="%TIMESTAMP% %HOSTNAME% %programname%:%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$DIR/gw/syslog.log" template="RSYSLOG_TraditionalFileFormat")
*.* action(type="omfile" file="$DIR/gw/syslog-nopid.log" template="nopid")
EOF
  local pid
  pid=$(start_daemon rsyslog "$NS_GW" "$s/rsyslog.out" rsyslogd -n -f "$s/rsyslog.conf" -i "$s/rsyslogd.pid")
  local i
  for ((i = 0; i < 50; i++)); do
    [ -S "$DIR/gw/syslog.sock" ] && return 0
    alive "$pid" || { cat "$s/rsyslog.out" >&2; die "rsyslogd exited during start-up"; }
    sleep 0.1
  done
  die "rsyslogd: no socket after 5 s"
}

cmd_up() {
  [ $# -ge 2 ] || usage
  set_instance "$1" "$2"; shift 2
  local radius=no syslog=no acct_port=1813 nginx=no
  WEAK=no
  while [ $# -gt 0 ]; do
    case $1 in
      --radius) radius=yes ;;
      --radius-acct-port)
        # charon's RADIUS accounting goes to 127.0.0.1:PORT in the gateway namespace
        # (e.g. tunnelwatch's own accounting receiver) instead of FreeRADIUS.
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || die "up: --radius-acct-port needs a port number"
        acct_port=$2; shift ;;
      --syslog) syslog=yes ;;
      --pool)
        # e.g. 10.99.0.1-10.99.0.1: a pool of one address, so that the next client gets
        # the address the last one released.
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9./-]+$ ]] || die "up: --pool needs an address range"
        POOL=$2; shift ;;
      # nginx instead of python's http.server as the API, logging `combined` and JSON.
      --nginx) nginx=yes ;;
      # rw-psk also accepts 3DES/SHA-1/MODP_1024 (after the defaults), and each client
      # has a connection rw-weak that proposes only that (identity CLIENT@psk.vpn.test).
      --weak-crypto) WEAK=yes ;;
      *) die "up: unknown option $1" ;;
    esac
    shift
  done
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, mounts)"
  [ -x "$CHARON" ] || die "$CHARON not found: run '$0 install' first"
  command -v swanctl >/dev/null || die "swanctl not found: run '$0 install' first"
  command -v pki >/dev/null || die "pki not found: run '$0 install' first"
  if [ "$radius" = yes ]; then command -v freeradius >/dev/null || die "freeradius not found: run '$0 install'"; fi
  if [ "$syslog" = yes ]; then command -v rsyslogd >/dev/null || die "rsyslogd not found: run '$0 install --syslog'"; fi
  if [ "$nginx" = yes ]; then [ -x /usr/sbin/nginx ] || die "nginx not found: apt-get install nginx-light"; fi
  local ns
  for ns in $(all_ns); do
    ns_exists "$ns" && die "namespace $ns already exists (instance $NAME is up? run down first)"
  done
  mkdir -p "$DIR"
  # A fresh start: no logs, sockets or configs of an earlier run in this DIR.
  rm -rf "$DIR/gw" "$DIR/client1" "$DIR/client2" "$DIR/api" "$DIR/pki" "$DIR/options" \
    "$DIR/moved-client1" "$DIR/moved-client2"
  CLIENT_ADDR=([client1]=192.0.2.11 [client2]=192.0.2.12)
  : > "$DIR/pids"
  # On any failure from here on, tear down what was built.
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed, tearing down"; cmd_down "$NAME" "$DIR" || true; fi' EXIT

  # --- network ---
  for ns in $(all_ns); do
    ip netns add "$ns" || die "'ip netns add $ns' failed (need root and network namespace support)"
    ip -n "$ns" link set lo up
  done
  ip -n "$NS_GW" link add br0 type bridge
  ip -n "$NS_GW" addr add "$GW_OUTER/24" dev br0
  ip -n "$NS_GW" link set br0 up
  local c cns
  for c in client1 client2; do
    cns=$(client_ns "$c")
    # Created directly inside the namespaces: nothing ever appears in the root
    # namespace, so parallel instances never clash on interface names.
    ip -n "$NS_GW" link add "$c" type veth peer name eth0 netns "$cns"
    ip -n "$NS_GW" link set "$c" master br0 up
    ip -n "$cns" addr add "${CLIENT_ADDR[$c]}/24" dev eth0
    ip -n "$cns" link set eth0 up
  done
  ip -n "$NS_GW" link add api type veth peer name eth0 netns "$NS_API"
  ip -n "$NS_GW" addr add "$GW_INNER/24" dev api
  ip -n "$NS_GW" link set api up
  ip -n "$NS_API" addr add "$API_ADDR/24" dev eth0
  ip -n "$NS_API" link set eth0 up
  ip -n "$NS_API" route add default via "$GW_INNER"
  in_ns "$NS_GW" sysctl -qw net.ipv4.ip_forward=1

  # --- API server behind the gateway ---
  mkdir -p "$DIR/api/www"
  echo "tunnelwatch testbed api ($NAME)" > "$DIR/api/www/index.html"
  if [ "$nginx" = yes ]; then
    write_nginx_conf
    start_daemon api-nginx "$NS_API" "$DIR/api/nginx.out" \
      /usr/sbin/nginx -e "$DIR/api/error.log" -c "$DIR/api/nginx.conf" >/dev/null
  else
    start_daemon api-http "$NS_API" "$DIR/api/http.log" \
      "$(python_bin)" -m http.server "$API_PORT" --bind "$API_ADDR" --directory "$DIR/api/www" >/dev/null
  fi

  # --- credentials and configs ---
  make_pki
  mkdir -p "$DIR/gw" "$DIR/client1" "$DIR/client2"
  make_swanctl_dirs "$DIR/gw"
  write_strongswan_conf gw "$radius" "$syslog" "$acct_port"
  write_gw_swanctl "$radius"
  for c in client1 client2; do
    make_swanctl_dirs "$DIR/$c"
    write_strongswan_conf "$c" no no
    write_client_swanctl "$c"
  done

  # --- daemons ---
  [ "$syslog" = yes ] && start_rsyslog
  [ "$radius" = yes ] && start_radius
  start_charon gw "$NS_GW" "$syslog"
  for c in client1 client2; do start_charon "$c" "$(client_ns "$c")"; done
  echo "radius=$radius syslog=$syslog weak=$WEAK" > "$DIR/options"
  trap - EXIT
  log "instance $NAME up in $DIR"
}

# ---------------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------------

need_up() {
  ns_exists "$NS_GW" || die "instance $NAME is not up (no namespace $NS_GW)"
}

# One line per IKE_SA from `swanctl --list-sas --raw` of daemon ROLE:
#   list-sa event {rw-psk {uniqueid=1 version=2 state=ESTABLISHED ... remote-host=192.0.2.11 ...
sa_lines() { swanctl_at "$1" --list-sas --raw 2>/dev/null | tr -d '\n' | sed 's/list-sa event/\n&/g' | grep '^list-sa event' || true; }

# The IKE_SA's own uniqueid (the first one on the line; CHILD_SAs have their own).
sa_ids() { sed -n 's/^list-sa event {[^ ]* {uniqueid=\([0-9]*\) .*/\1/p'; }

# The gateway's IKE_SA unique ids with CLIENT (by remote-host), oldest first.
gw_ike_ids() { # CLIENT [STATE]
  local addr=${CLIENT_ADDR[$1]} state=${2:-}
  sa_lines gw | grep -F " remote-host=$addr " | grep -F " state=${state}" | sa_ids | sort -n
}

client_ike_ids() { sa_lines "$1" | sa_ids | sort -n; } # CLIENT

cmd_connect() {
  [ $# -ge 4 ] || usage
  set_instance "$1" "$2"; local c=$3 conn=$4; shift 4
  client_ns "$c" >/dev/null; need_up
  local psk="" eap=""
  while [ $# -gt 0 ]; do
    case $1 in
      --psk) [ $# -ge 2 ] || die "--psk needs a value"; psk=$2; shift ;;
      --eap-password) [ $# -ge 2 ] || die "--eap-password needs a value"; eap=$2; shift ;;
      *) die "connect: unknown option $1" ;;
    esac
    shift
  done
  local child=net
  case $conn in
    rw-psk | rw-cert | rw-eap) ;;
    rw-radius) grep -q 'radius=yes' "$DIR/options" || die "rw-radius needs 'up --radius'" ;;
    rw-weak) grep -q 'weak=yes' "$DIR/options" || die "rw-weak needs 'up --weak-crypto'" ;;
    l2tp-psk) child=l2tp ;;
    *) die "CONN must be rw-psk, rw-cert, rw-eap, rw-radius or l2tp-psk, got '$conn'" ;;
  esac
  local out=$DIR/$c/initiate.out rc=0
  if [ -n "$psk$eap" ]; then
    write_client_secrets "$c" "$psk" "$eap"
    swanctl_at "$c" --load-creds --clear --noprompt >/dev/null
  fi
  swanctl_at "$c" --initiate --ike "$conn" --child "$child" --timeout 20 >"$out" 2>&1 || rc=$?
  if [ -n "$psk$eap" ]; then
    write_client_secrets "$c" "" ""
    swanctl_at "$c" --load-creds --clear --noprompt >/dev/null
  fi
  cat "$out" >&2
  [ "$rc" -eq 0 ] && return 0
  if grep -qE 'AUTHENTICATION_FAILED|N\(AUTH_FAILED\)|method failed|EAP_FAILURE|EAP authentication failed' "$out"; then
    log "$c: authentication for $conn failed"
    exit 3
  fi
  # The IKE_SA came up, its CHILD_SA did not (l2tp-psk: the client's libipsec refuses the
  # transport-mode SA, "IPsec SA: unsupported mode", and answers the gateway's quick mode
  # with NO_PROPOSAL_CHOSEN). Both IKE_SAs stay up: `disconnect` deletes them.
  if grep -qE "IKE_SA $conn\[[0-9]+\] established between" "$out" &&
    grep -qE "establishing CHILD_SA '?$child'? failed" "$out"; then
    log "$c: IKE_SA $conn established, its CHILD_SA $child failed"
    exit 5
  fi
  log "$c: connection $conn failed (swanctl exit $rc)"
  exit 4
}

# Client-initiated delete. By default the client first deletes its CHILD_SAs and then
# the IKE_SA (as e.g. Windows clients do): only a CHILD_SA delete makes the gateway log
# "closing CHILD_SA ... (N bytes)". --ike-only deletes just the IKE_SA (as strongSwan
# clients do; the CHILD_SAs go with it, without that line).
cmd_disconnect() {
  [ $# -ge 3 ] || usage
  set_instance "$1" "$2"; local c=$3 ike_only=no; client_ns "$c" >/dev/null; need_up
  [ "${4:-}" = --ike-only ] && ike_only=yes
  local ids id child
  ids=$(client_ike_ids "$c")
  [ -n "$ids" ] || die "$c has no IKE_SA to disconnect"
  if [ "$ike_only" = no ]; then
    for child in $(sa_lines "$c" | grep -o '{name=[^ ]* uniqueid=[0-9]*' | sed 's/.*uniqueid=//'); do
      swanctl_at "$c" --terminate --child-id "$child" --timeout 10 >&2
    done
  fi
  for id in $ids; do
    swanctl_at "$c" --terminate --ike-id "$id" --timeout 10 >&2
  done
}

cmd_terminate() {
  [ $# -eq 3 ] || usage
  set_instance "$1" "$2"; local c=$3; client_ns "$c" >/dev/null; need_up
  local ids id; ids=$(gw_ike_ids "$c")
  [ -n "$ids" ] || die "the gateway has no IKE_SA with $c (${CLIENT_ADDR[$c]})"
  for id in $ids; do
    swanctl_at gw --terminate --ike-id "$id" --timeout 10 >&2
  done
}

# The gateway terminates every IKE_SA of a connection by its name, whoever holds them.
cmd_terminate_conn() {
  [ $# -eq 3 ] || usage
  set_instance "$1" "$2"; local conn=$3; need_up
  [[ $conn =~ ^[A-Za-z0-9-]+$ ]] || die "CONN must be a connection name, got '$conn'"
  sa_lines gw | grep -q "^list-sa event {$conn {" || die "the gateway has no IKE_SA of connection $conn"
  swanctl_at gw --terminate --ike "$conn" --timeout 10 >&2
  local i
  for ((i = 0; i < 50; i++)); do
    sa_lines gw | grep -q "^list-sa event {$conn {" || return 0
    sleep 0.1
  done
  die "IKE_SAs of $conn still listed 5 s after terminating them"
}

cmd_kill_client() {
  [ $# -eq 3 ] || usage
  set_instance "$1" "$2"; local c=$3; client_ns "$c" >/dev/null; need_up
  local pid; pid=$(pid_of "$c-charon")
  [ -n "$pid" ] && ours "$pid" || die "$c's charon is not running"
  kill -KILL "$pid"
  wait_dead "$pid" 5 || die "$c's charon (pid $pid) did not die"
}

cmd_start_client() {
  [ $# -eq 3 ] || usage
  set_instance "$1" "$2"; local c=$3 cns; cns=$(client_ns "$c"); need_up
  local pid; pid=$(pid_of "$c-charon")
  if [ -n "$pid" ] && ours "$pid"; then die "$c's charon is already running"; fi
  start_charon "$c" "$cns"
}

# restart-gateway: stop the gateway's charon (SIGTERM: its SAs end without DELETEs reaching
# anyone it could tell) and start it again with the same configuration; clients must
# connect again.
cmd_restart_gateway() {
  [ $# -eq 2 ] || usage
  set_instance "$1" "$2"; need_up
  local pid; pid=$(pid_of gw-charon)
  [ -n "$pid" ] && ours "$pid" || die "the gateway's charon is not running"
  stop_pid "$pid"
  local syslog=no
  grep -q 'syslog=yes' "$DIR/options" 2>/dev/null && syslog=yes
  start_charon gw "$NS_GW" "$syslog"
}

cmd_rekey() {
  [ $# -ge 3 ] || usage
  set_instance "$1" "$2"; local c=$3 by=gateway; shift 3
  client_ns "$c" >/dev/null; need_up
  [ "${1:-}" = --by-client ] && by=client
  # The newest established IKE_SA with that client.
  local old; old=$(gw_ike_ids "$c" ESTABLISHED | tail -n 1)
  [ -n "$old" ] || die "the gateway has no established IKE_SA with $c"
  if [ "$by" = gateway ]; then
    swanctl_at gw --rekey --ike-id "$old" >&2
  else
    # The client has IKE_SAs only with the gateway: rekey its newest.
    local id; id=$(client_ike_ids "$c" | tail -n 1)
    swanctl_at "$c" --rekey --ike-id "$id" >&2
  fi
  # An IKE rekey replaces the IKE_SA by one with a new unique id; wait for it.
  local i
  for ((i = 0; i < 100; i++)); do
    if ! gw_ike_ids "$c" | grep -qx "$old" && [ -n "$(gw_ike_ids "$c" ESTABLISHED)" ]; then return 0; fi
    sleep 0.1
  done
  die "IKE rekey with $c did not complete within 10 s"
}

cmd_curl() {
  [ $# -eq 3 ] || [ $# -eq 4 ] || usage
  set_instance "$1" "$2"; local c=$3 cns; cns=$(client_ns "$c"); need_up
  local path=${4:-/}
  [[ $path =~ ^/[A-Za-z0-9/._?=\&-]*$ ]] || die "curl: PATH must start with / and be plain, got '$path'"
  local url="http://$API_ADDR:$API_PORT$path"
  if command -v curl >/dev/null; then
    in_ns "$cns" curl -sS --fail --max-time 5 "$url"
  else
    in_ns "$cns" "$(python_bin)" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$url"
  fi
}

# The client's next IKE_SAs come from ADDRESS (any IPv4 address: it lives only inside the
# instance's namespaces): added to its eth0 as the source of its route to the gateway, and
# routed to it on the gateway's bridge. For tests that need a client somewhere else in the
# world (GeoIP), e.g. impossible travel.
cmd_move() {
  [ $# -ge 4 ] || usage
  set_instance "$1" "$2"; local c=$3 addr=$4
  local cns; cns=$(client_ns "$c"); need_up
  [[ "$addr" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "ADDRESS must be an IPv4 address, got '$addr'"
  if ! ip -n "$cns" -4 addr show dev eth0 | grep -qF " $addr/"; then
    ip -n "$cns" addr add "$addr/32" dev eth0
  fi
  ip -n "$cns" route replace "${GW_OUTER%.*}.0/24" dev eth0 src "$addr"
  ip -n "$NS_GW" route replace "$addr/32" dev br0
  echo "$addr" > "$DIR/moved-$c"
}

cmd_down() {
  [ $# -ge 2 ] || usage
  set_instance "$1" "$2"
  local role pid ns
  if [ -f "$DIR/pids" ]; then
    # Newest first: clients, gateway charon, then the helpers it talks to.
    while read -r role pid; do
      [ -n "${pid:-}" ] && stop_pid "$pid"
    done < <(tac "$DIR/pids")
  else
    # No pids file (DIR gone, e.g. a crashed test run whose temp dir was removed):
    # what still runs inside this instance's namespaces was started by this script.
    for ns in $(all_ns); do
      ns_exists "$ns" || continue
      for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
    done
  fi
  # Each daemon's bind mounts live in its own `ip netns exec` mount namespace and
  # vanish with it; what remains in the root namespace are the /run/netns entries.
  for ns in $(all_ns); do
    if ns_exists "$ns"; then
      ip netns del "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null || true; rm -f "/run/netns/$ns"; }
    fi
  done
  return 0
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1; shift
  case $cmd in
    install) cmd_install "$@" ;;
    up) cmd_up "$@" ;;
    connect) cmd_connect "$@" ;;
    disconnect) cmd_disconnect "$@" ;;
    terminate) cmd_terminate "$@" ;;
    terminate-conn) cmd_terminate_conn "$@" ;;
    kill-client) cmd_kill_client "$@" ;;
    start-client) cmd_start_client "$@" ;;
    rekey) cmd_rekey "$@" ;;
    curl) cmd_curl "$@" ;;
    move) cmd_move "$@" ;;
    restart-gateway) cmd_restart_gateway "$@" ;;
    down) cmd_down "$@" ;;
    -h | --help | help) usage ;;
    *) die "unknown subcommand '$cmd'" ;;
  esac
}

main "$@"
