#!/usr/bin/env bash
# run-server.sh - build and start the example server smtpd-maildir on
# 127.0.0.1:2525 (STARTTLS) and 127.0.0.1:4650 (implicit TLS), with a
# generated self-signed certificate and a demo user. README's first command.
# Mail lands in ./mail/new/. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target smtpd-maildir

state=build/demo
mkdir -p "$state"
if [ ! -f "$state/cert.pem" ]; then
  # a self-signed certificate made with GnuTLS's certtool
  printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\nexpiration_days = 365\ntls_www_server\nsigning_key\nencryption_key\n' \
    > "$state/cert.tmpl"
  certtool --generate-privkey --key-type=ecdsa --outfile "$state/key.pem" 2>/dev/null
  certtool --generate-self-signed --load-privkey "$state/key.pem" \
    --template "$state/cert.tmpl" --outfile "$state/cert.pem" 2>/dev/null
  chmod 600 "$state/key.pem"
fi
if [ ! -f "$state/users" ]; then
  printf 'demo:demo-password\n' > "$state/users"
fi
echo "run-server.sh: demo user 'demo', password 'demo-password'" >&2
echo "run-server.sh: try: swaks --server 127.0.0.1:2525 -tls --auth PLAIN --auth-user demo --auth-password demo-password --to a@example.org" >&2
exec ./build/examples/smtpd-maildir --listen 127.0.0.1:2525 \
  --tls-listen 127.0.0.1:4650 --cert "$state/cert.pem" --key "$state/key.pem" \
  --users "$state/users" --maildir ./mail --hostname localhost "$@"
