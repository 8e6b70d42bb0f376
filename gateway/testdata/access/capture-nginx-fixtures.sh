#!/usr/bin/env bash
# Captures the nginx fixtures of gateway/testdata/access/ from a real nginx.
#
# Starts nginx (Debian's nginx-light or nginx: `apt-get install -y nginx-light`) on 127.0.0.1
# and [::1] with a private prefix in a temporary directory, writes three access logs of the
# same requests (the predefined `combined` format, `combined` plus `$request_time
# "$request_id"`, and an `escape=json` object), sends ordinary and hostile requests with curl
# and raw bytes over bash's /dev/tcp, stops nginx and copies the logs here:
#
#   nginx-combined.log      log_format combined (predefined)
#   nginx-combined-ext.log  combined + ' $request_time "$request_id"'
#   nginx-json.log          log_format escape=json '{...}' (the keys are nginx's variable names)
#
# Timestamps, request ids and durations are whatever the run produced; the goldens
# (*.expected) must be regenerated after a new capture:
#   UPDATE_EXPECT=1 cargo test -p gateway --lib parse::access
#
# Usage: gateway/testdata/access/capture-nginx-fixtures.sh [PORT]   (default 18480)
set -euo pipefail

port=${1:-18480}
here=$(cd "$(dirname "$0")" && pwd)
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx not found: apt-get install -y nginx-light" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

dir=$(mktemp -d)
# nginx's workers run as an unprivileged user: they must be able to read the files served.
chmod 755 "$dir"
cleanup() {
    if [ -s "$dir/nginx.pid" ]; then
        kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

listen6=""
if curl -s -o /dev/null --max-time 1 "http://[::1]:1/" 2>/dev/null; [ -e /proc/net/if_inet6 ]; then
    listen6="listen [::1]:$port;"
fi

head -c 8192 /dev/zero | tr '\0' 'x' >"$dir/download.bin"
mkdir -p "$dir/html/static"
echo '{"ok":true}' >"$dir/html/static/users.json"

cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type application/octet-stream;

    log_format combined_ext '\$remote_addr - \$remote_user [\$time_local] '
                            '"\$request" \$status \$body_bytes_sent '
                            '"\$http_referer" "\$http_user_agent" \$request_time "\$request_id"';
    log_format json_access escape=json '{'
        '"time_iso8601":"\$time_iso8601",'
        '"msec":"\$msec",'
        '"remote_addr":"\$remote_addr",'
        '"remote_user":"\$remote_user",'
        '"request":"\$request",'
        '"request_method":"\$request_method",'
        '"request_uri":"\$request_uri",'
        '"host":"\$host",'
        '"server_addr":"\$server_addr",'
        '"server_port":"\$server_port",'
        '"status":"\$status",'
        '"body_bytes_sent":"\$body_bytes_sent",'
        '"request_time":"\$request_time",'
        '"request_id":"\$request_id",'
        '"http_referer":"\$http_referer",'
        '"http_user_agent":"\$http_user_agent"'
    '}';

    access_log $dir/combined.log combined;
    access_log $dir/combined-ext.log combined_ext;
    access_log $dir/json.log json_access;

    server {
        listen 127.0.0.1:$port;
        $listen6
        server_name api.test;
        root $dir/html;

        location = /download { alias $dir/download.bin; limit_rate 4k; }
        location /static/ { }
        location /api/ { return 200 '{"ok":true}\n'; }
        location = /api/v1/missing { return 404; }
        location = /api/v1/broken { return 500; }
        location = /api/v1/teapot { return 418; }
        location / { return 200 "hello\n"; }
    }
}
CONF

"$nginx" -p "$dir" -c "$dir/nginx.conf"
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done

base="http://127.0.0.1:$port"
c() { curl -s -o /dev/null --max-time 10 "$@" || true; }
# Raw bytes to the server: the request is printf's format (escapes allowed).
raw() {
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf "$1" >&3
    timeout 5 cat <&3 >/dev/null || true
    exec 3>&-
}

# Ordinary API traffic.
c -A 'curl/7.88.1' "$base/api/v1/users?id=42&token=secret"
c -X POST -H 'Content-Type: application/json' -d '{"name":"alice"}' -A 'python-requests/2.31.0' "$base/api/v1/sessions"
c -X PUT -d 'x=1' "$base/api/v1/users/42"
c -X DELETE "$base/api/v1/users/42"
c -I "$base/api/v1/health"
c "$base/api/v1/missing"
c "$base/api/v1/broken"
c "$base/api/v1/teapot"
c -H 'Host: other.example:8443' "$base/api/v1/hosts"
c -e 'https://console.example/page?a=1' "$base/static/users.json"
c "$base/download"
c --http1.0 "$base/api/v1/old"
[ -n "$listen6" ] && c -A 'curl-ipv6' "http://[::1]:$port/api/v1/v6?x=1"

# Hostile: quotes, backslashes, escapes and control bytes in the user agent and referer.
c -A 'Mozilla/5.0 "quoted" \back\slash' -e 'http://evil/"x"' "$base/api/v1/quotes"
c -A $'\e[31mred\e[0m \e]0;title\a' "$base/api/v1/ansi"
c -A $'bytes \xff\xfe caf\xc3\xa9' "$base/api/v1/bytes"
# Percent-encoded CR/LF and ANSI in the path (sent as is), raw non-UTF-8 bytes in the path.
c --path-as-is "$base/api/v1/a%0d%0aSet-Cookie:%20x=1/%1b%5b31m"
c --path-as-is $'http://127.0.0.1:'"$port"$'/api/v1/raw\xff\xfe/caf\xc3\xa9?q=\xe2\x82\xac'
# A long path (within nginx's buffers) and one too long for them (414).
c "$base/api/v1/$(head -c 3000 /dev/zero | tr '\0' 'a')"
c "$base/api/v1/$(head -c 9000 /dev/zero | tr '\0' 'b')"
# Absolute-form request target, and a method nginx does not know.
raw 'GET http://api.test/api/v1/absolute?x=1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'
raw 'BREW /api/v1/coffee HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'
# A bare CR and a raw LF inside the request line; a header with a bare CR.
raw 'GET /api/v1/cr\rinjected HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'
raw 'GET /api/v1/x HTTP/1.1\r\nHost: api.test\r\nUser-Agent: a\rb\r\nConnection: close\r\n\r\n'
# Garbage: not HTTP at all, a TLS ClientHello on the plain port, and a bare line feed.
raw 'GARBAGE\r\n\r\n'
raw '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03'
raw '\r\n'
raw 'GET /api/v1/nohost HTTP/1.1\r\nConnection: close\r\n\r\n'

# Let nginx finish writing, then stop it (its logs are written per request).
sleep 0.5
kill -QUIT "$(cat "$dir/nginx.pid")"
for _ in $(seq 50); do [ -e "$dir/nginx.pid" ] || break; sleep 0.1; done

cp "$dir/combined.log" "$here/nginx-combined.log"
cp "$dir/combined-ext.log" "$here/nginx-combined-ext.log"
cp "$dir/json.log" "$here/nginx-json.log"
wc -l "$here"/nginx-*.log
echo "nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///'), captured $(date -u +%Y-%m-%dT%H:%M:%SZ)"
