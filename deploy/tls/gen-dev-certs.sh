#!/bin/sh
# Makes a development CA and the certificates for mutual TLS on xDS: one server certificate for the
# control plane and client certificates for the agents and for Envoy. Each goes in its own
# directory as tls.crt, tls.key and ca.crt, the layout of a kubernetes.io/tls Secret with a CA
# (what cert-manager writes), which deploy/components/xds-mtls and envoy/bootstrap-mtls.yaml use.
#
# Usage: deploy/tls/gen-dev-certs.sh [OUT_DIR]     (default: ./ebpf-xds-dev-certs)
#   NAMESPACE=ebpf-xds  namespace of the control plane Service (goes into the server's names)
#   DAYS=365            validity
#
# For development and tests only: the CA key sits next to the certificates. In production issue
# these from your own CA (cert-manager, Vault, ...) with the same names and key usages.
set -eu

out=${1:-./ebpf-xds-dev-certs}
ns=${NAMESPACE:-ebpf-xds}
days=${DAYS:-365}
svc=ebpf-xds-control-plane

command -v openssl >/dev/null 2>&1 || {
  echo "gen-dev-certs: openssl not found; install it (apt-get install openssl)" >&2
  exit 1
}
if [ -e "$out/ca.key" ]; then
  echo "gen-dev-certs: $out/ca.key exists; remove $out or pass another directory" >&2
  exit 1
fi
mkdir -p "$out"
umask 077

# ECDSA P-256: small, fast handshakes, and accepted by Envoy (BoringSSL) and Node (OpenSSL).
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=ebpf-xds development CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/ca.crt"

# issue NAME CN EXTENDED_KEY_USAGE SUBJECT_ALT_NAMES
issue() {
  dir="$out/$1"
  mkdir -p "$dir"
  newkey "$dir/tls.key"
  openssl req -new -key "$dir/tls.key" -subj "/CN=$2" -out "$dir/tls.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$3" "$4" >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -sha256 -days "$days" -extfile "$dir/ext.cnf" -out "$dir/tls.crt" 2>/dev/null
  cp "$out/ca.crt" "$dir/ca.crt"
  rm -f "$dir/tls.csr" "$dir/ext.cnf"
}

# Every name a client may dial: the Service in each DNS form, the Compose service name, loopback.
issue control-plane "$svc" serverAuth \
  "DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local,DNS:control-plane,DNS:localhost,IP:127.0.0.1,IP:::1"
issue agent ebpf-xds-agent clientAuth "DNS:ebpf-xds-agent"
issue envoy ebpf-xds-envoy clientAuth "DNS:ebpf-xds-envoy"
rm -f "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out"/*/tls.crt "$out"/*/ca.crt

cat <<EOF
Wrote $out: ca.crt, ca.key, and control-plane/, agent/, envoy/ with tls.crt, tls.key, ca.crt.
Create the Secrets for deploy/overlays/mtls:
  kubectl -n $ns create secret generic ebpf-xds-control-plane-tls --type=kubernetes.io/tls \\
    --from-file=$out/control-plane/tls.crt --from-file=$out/control-plane/tls.key --from-file=$out/control-plane/ca.crt
  kubectl -n $ns create secret generic ebpf-xds-agent-tls --type=kubernetes.io/tls \\
    --from-file=$out/agent/tls.crt --from-file=$out/agent/tls.key --from-file=$out/agent/ca.crt
Envoy (envoy/bootstrap-mtls.yaml) reads $out/envoy/{tls.crt,tls.key,ca.crt} from /etc/envoy/tls.
EOF
