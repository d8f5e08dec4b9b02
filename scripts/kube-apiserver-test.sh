#!/usr/bin/env bash
# Opt-in (`make test-kube`): the Kubernetes adapter against a REAL kube-apiserver with RBAC, the envtest way.
#
# Builds etcd and kube-apiserver from the wrapper module test/kubeapiserver (k8s.io/kubernetes and the etcd
# server it requires; nothing is downloaded but Go modules), caches the binaries under
# $JITBOT_KUBE_CACHE (default ~/.cache/jitbot-kube/<hash of the wrapper's go.mod and go.sum>), starts etcd and
# kube-apiserver on free loopback ports with --authorization-mode=RBAC and an admin client certificate
# (group system:masters) the way controller-runtime's envtest does, runs the grants/kube tests that need
# them (JITBOT_TEST_KUBE_APISERVER=<admin kubeconfig>), and stops everything it started on exit.
#
# Environment: JITBOT_KUBE_CACHE (binary cache root), JITBOT_KUBE_KEEP=1 (keep the run directory with the
# logs), JITBOT_KUBE_TEST_RUN (go test -run pattern, default the real-server tests), JITBOT_KUBE_ETCD (an etcd
# binary to use instead of the one built here, e.g. Debian's /usr/bin/etcd from etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
wrapper=$root/test/kubeapiserver

hash=$(cat "$wrapper/go.mod" "$wrapper/go.sum" | sha256sum | cut -c1-16)
cache=${JITBOT_KUBE_CACHE:-$HOME/.cache/jitbot-kube}/$hash
mkdir -p "$cache"
if [ ! -x "$cache/etcd" ] || [ ! -x "$cache/kube-apiserver" ]; then
  echo "== building etcd and kube-apiserver into $cache (cold: many minutes on 2 cores)"
  start=$(date +%s)
  (cd "$wrapper" &&
    nice -n 10 go build -trimpath -o "$cache/etcd.tmp" go.etcd.io/etcd/server/v3 &&
    nice -n 10 go build -trimpath -o "$cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$cache/etcd.tmp" "$cache/etcd"
  mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
  echo "== built in $(($(date +%s) - start))s"
else
  echo "== using cached binaries in $cache"
fi

for tool in openssl curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing $tool with apt-get" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    else
      echo "kube-apiserver-test: $tool is needed" >&2
      exit 1
    fi
  fi
done

run=$(mktemp -d "${TMPDIR:-/tmp}/jitbot-kube.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  local t0 pid
  t0=$(date +%s)
  # kube-apiserver first (its graceful shutdown still talks to etcd), then etcd; each gets 15s to exit.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "== stopped the servers in $(($(date +%s) - t0))s"
  if [ "$rc" -ne 0 ]; then
    echo "== failed; last lines of the server logs:" >&2
    tail -n 30 "$run/etcd.log" "$run/kube-apiserver.log" >&2 2>/dev/null || true
  fi
  if [ "${JITBOT_KUBE_KEEP:-}" = 1 ]; then echo "== kept $run"; else rm -rf "$run"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

# free_port sets $port to a loopback port nothing listens on (random in 20000-59999, probed with bash's
# /dev/tcp, never one handed out before); a server that then fails to bind it ends the readiness wait below
# with its log.
used_ports=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    case $used_ports in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports="$used_ports$p "
      port=$p
      return
    fi
  done
}

# Certificates, as envtest makes them: a CA, the apiserver's serving certificate for 127.0.0.1, an admin
# client certificate in system:masters, and a key pair for signing ServiceAccount tokens.
pki=$run/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=jitbot-test-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 1 -extfile apiserver.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=jitbot-test-admin" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >admin.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 1 -extfile admin.ext 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

free_port && etcd_port=$port
free_port && etcd_peer=$port
free_port && api_port=$port

etcd_bin=${JITBOT_KUBE_ETCD:-$cache/etcd}
etcd_extra=()
if [ -z "${JITBOT_KUBE_ETCD:-}" ]; then
  etcd_extra=(--unsafe-no-fsync) # a throw-away test store (etcd 3.5+)
fi
"$etcd_bin" --data-dir "$run/etcd" --name jitbot-test \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "jitbot-test=http://127.0.0.1:$etcd_peer" \
  "${etcd_extra[@]}" >"$run/etcd.log" 2>&1 &
pids+=($!)

# The flags are envtest's defaults (controller-runtime pkg/internal/testing/controlplane/apiserver.go) plus its
# certificate authentication (--client-ca-file).
"$cache/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$run/apiserver-certs" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --authorization-mode RBAC \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true --endpoint-reconciler-type none \
  --disable-admission-plugins ServiceAccount \
  --service-account-issuer "https://127.0.0.1:$api_port/" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  >"$run/kube-apiserver.log" 2>&1 &
pids+=($!)

kubeconfig=$run/admin.kubeconfig
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF

echo "== waiting for kube-apiserver on 127.0.0.1:$api_port (etcd on $etcd_port)"
start=$(date +%s)
until curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
  "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a server exited before the apiserver became ready" >&2
      exit 1
    fi
  done
  if [ $(($(date +%s) - start)) -gt 300 ]; then
    echo "kube-apiserver not ready after 300s" >&2
    exit 1
  fi
  sleep 1
done
echo "== kube-apiserver from $(grep -m1 -o 'k8s.io/kubernetes v[0-9.]*' "$wrapper/go.mod"), $("$etcd_bin" --version | head -1)"
echo "== ready after $(($(date +%s) - start))s"

start=$(date +%s)
status=0
JITBOT_TEST_KUBE_APISERVER=$kubeconfig go test -race -count=1 -timeout 20m \
  -run "${JITBOT_KUBE_TEST_RUN:-APIServer}" ${JITBOT_KUBE_TEST_FLAGS:-} ./grants/kube/ || status=$?
echo "== tests (including their compilation) took $(($(date +%s) - start))s"
exit "$status"
