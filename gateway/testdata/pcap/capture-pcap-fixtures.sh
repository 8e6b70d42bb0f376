#!/usr/bin/env bash
# Recaptures the pcap fixtures in this directory from real traffic between two network
# namespaces joined by a veth pair (root, tcpdump, python3, curl, iproute2):
#   eth.pcap       tcpdump -i veth (LINKTYPE_ETHERNET, microseconds)
#   any-nano.pcap  tcpdump -i any  (LINKTYPE_LINUX_SLL2, nanoseconds)
# The traffic: two HTTP requests (IPv4), one over IPv6, a 200 kB download, pings (one
# fragmented), and a UDP exchange. Client 10.99.0.5 / fd99::5, server 10.99.0.10 / fd99::10.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
a=tw-pcap-a; b=tw-pcap-b; work=$(mktemp -d)
cleanup() {
    [ -n "${http_pid:-}" ] && kill "$http_pid" 2>/dev/null || true
    [ -n "${udp_pid:-}" ] && kill "$udp_pid" 2>/dev/null || true
    for pid in ${dump_pids:-}; do kill "$pid" 2>/dev/null || true; done
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add tw-veth-a netns "$a" type veth peer name tw-veth-b netns "$b"
ip -n "$a" addr add 10.99.0.5/24 dev tw-veth-a
ip -n "$b" addr add 10.99.0.10/24 dev tw-veth-b
ip -n "$a" -6 addr add fd99::5/64 dev tw-veth-a nodad
ip -n "$b" -6 addr add fd99::10/64 dev tw-veth-b nodad
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set tw-veth-a up; ip -n "$b" link set tw-veth-b up
head -c 200000 /dev/urandom > "$work/big.bin"
echo '{"ok":true}' > "$work/status.json"
(cd "$work" && exec ip netns exec "$b" python3 -m http.server --bind :: 8080 >/dev/null 2>&1) & http_pid=$!
ip netns exec "$b" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.10", 5353))
data, peer = s.recvfrom(2048); s.sendto(b"pong:" + data, peer)
' & udp_pid=$!
ip netns exec "$b" tcpdump -q -i tw-veth-b -w "$work/eth.pcap" 2>/dev/null & dump_pids="$!"
ip netns exec "$b" tcpdump -q -i any --time-stamp-precision=nano -w "$work/any-nano.pcap" 2>/dev/null & dump_pids="$dump_pids $!"
sleep 2
ip netns exec "$a" curl -s -o /dev/null http://10.99.0.10:8080/status.json
ip netns exec "$a" curl -s -o /dev/null -H 'X-Request-Id: fixture-2' http://10.99.0.10:8080/status.json?x=1
ip netns exec "$a" curl -s -o /dev/null 'http://[fd99::10]:8080/status.json'
ip netns exec "$a" curl -s -o /dev/null http://10.99.0.10:8080/big.bin
ip netns exec "$a" ping -q -c 2 -i 0.2 10.99.0.10 >/dev/null
ip netns exec "$a" ping -q -c 1 -s 4000 10.99.0.10 >/dev/null
ip netns exec "$a" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.bind(("10.99.0.5", 40001))
s.sendto(b"ping", ("10.99.0.10", 5353)); print(s.recvfrom(2048)[0])
' >/dev/null
sleep 1
for pid in $dump_pids; do kill -INT "$pid"; done
wait $dump_pids 2>/dev/null || true
cp "$work/eth.pcap" "$work/any-nano.pcap" "$out/"
ls -l "$out"/*.pcap
