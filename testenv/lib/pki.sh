#!/usr/bin/env bash
# Makes the cluster's certificates and service-account keys, fresh, with openssl.
#   lib/pki.sh DIR NODE_IP SERVICE_IP NODES
# ECDSA P-256 keys throughout (quick to make); valid 30 days, since a test cluster is short-lived.
set -euo pipefail
dir=$1 node_ip=$2 service_ip=$3 nodes=$4
cd "$dir"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=pvcheck-testenv-ca" -out ca.crt

# cert NAME SUBJECT USAGE [SANS]: a certificate signed by the CA.
cert() {
  local name=$1 subject=$2 usage=$3 sans=${4:-}
  newkey "$name"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 30 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$node_ip,IP:$service_ip"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin "/O=system:masters/CN=pvcheck-testenv-admin" clientAuth
cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
# The CSI driver's sidecars and the snapshot controller run with this kubeconfig (see README.md).
cert csi "/O=system:masters/CN=pvcheck-testenv-csi" clientAuth
for ((n = 1; n <= nodes; n++)); do
  cert "kubelet-$n" "/O=system:nodes/CN=system:node:pvcheck-node-$n" clientAuth
  cert "kubelet-$n-serving" "/CN=pvcheck-node-$n" serverAuth "DNS:pvcheck-node-$n,IP:$node_ip,IP:127.0.0.1"
done

# The aggregation layer's front proxy has a CA of its own (the API server publishes it in
# kube-system/extension-apiserver-authentication; without it every component logs errors).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out front-proxy-ca.key 2>/dev/null
openssl req -x509 -new -key front-proxy-ca.key -sha256 -days 30 -subj "/CN=pvcheck-testenv-front-proxy-ca" -out front-proxy-ca.crt
newkey front-proxy-client
openssl req -new -key front-proxy-client.key -subj "/CN=front-proxy-client" -out front-proxy-client.csr
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >front-proxy-client.ext
openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial \
  -sha256 -days 30 -extfile front-proxy-client.ext -out front-proxy-client.crt 2>/dev/null
rm -f front-proxy-client.csr front-proxy-client.ext

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key 2>/dev/null
openssl pkey -in sa.key -pubout -out sa.pub
chmod 0600 ./*.key
