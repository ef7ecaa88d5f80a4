#!/usr/bin/env bash
# A throwaway CA and the certificates `make run-tls` and config/tls.yaml use,
# made on the spot under $1 (default target/run-tls) if not there yet:
#   ca.crt            verifies every certificate below
#   redis.crt/.key    the local redis-server (localhost, 127.0.0.1)
#   tenantry.crt/.key tenantry's listeners (localhost, 127.0.0.1)
#   client.crt/.key   a client certificate naming spiffe://tenantry.local/ns/demo/sa/app
# Nothing here is ever committed: private keys are made per machine.
set -euo pipefail
dir=${1:-target/run-tls}
mkdir -p "$dir"
cd "$dir"
[ -f ca.crt ] && [ -f client.crt ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tenantry run-tls CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
issue() { # name subject-alt-names extended-key-usage
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue redis "DNS:localhost,IP:127.0.0.1" "serverAuth,clientAuth"
issue tenantry "DNS:localhost,IP:127.0.0.1" "serverAuth"
issue client "URI:spiffe://tenantry.local/ns/demo/sa/app" "clientAuth"
chmod 600 ./*.key
echo "test certificates in $PWD" >&2
