#!/usr/bin/env bash
# A one-node Kubernetes cluster on this host, with real containers: the e2e tier's stand-in for
# `kind create cluster` where kind's privileged node containers cannot run (see
# tests/e2e/README.md for why and what differs).
#
#   tests/e2e/node/cluster.sh up      # start it; prints `export KUBECONFIG=...`
#   tests/e2e/node/cluster.sh load T  # import an image tarball (docker save) into the node
#   tests/e2e/node/cluster.sh down    # stop every process it started (by pid), undo its
#                                     # network and iptables changes, remove its state
#   tests/e2e/node/cluster.sh dump    # pods, events and the components' log tails
#   tests/e2e/node/cluster.sh kill-container NS POD CONTAINER   # SIGKILL it (a crash)
#
# What runs (each a child process of `up`, recorded in $STATE/pids):
#   etcd                    127.0.0.1, free ports
#   kube-apiserver          https://10.244.0.1:6443 (the node bridge's address: pods reach it
#                           through the `kubernetes` Service; nothing listens beyond this host)
#   kube-controller-manager, kube-scheduler   127.0.0.1, free ports
#   containerd              its own instance and socket (not Docker's), CRI with the bridge
#                           CNI of Debian's containernetworking-plugins; sandbox image
#                           kubenenc-pause, restrict_oom_score_adj (the VM lacks
#                           CAP_SYS_RESOURCE)
#   kubelet                 node `kubenenc-node`, cgroup v1 allowed (failCgroupV1: false)
#   kube-proxy              iptables mode: Services work; NodePorts only on 10.244.0.1
#   CoreDNS                 a Deployment in kube-system behind 10.96.0.10, no forwarding
#
# Pods get addresses in 10.244.0.0/24 on bridge knc0; iptables drops anything they send out of
# the host (only the bridge and the host itself are reachable). Binaries come from
# ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}/bin (tests/cluster/build-binaries.sh and
# tests/e2e/node/build.sh). Needs root, containerd, runc, iptables and the CNI plugins
# (apt-get install containerd runc iptables containernetworking-plugins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
BIN="$CACHE_DIR/bin"
STATE="${KUBENENC_NODE_STATE:-/run/kubenenc-e2e}"
DATA="${KUBENENC_NODE_DATA:-/var/lib/kubenenc-e2e}"
NODE=kubenenc-node
BRIDGE=knc0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
CTR_SOCK="$STATE/containerd.sock"
IPT_TAG="kubenenc-e2e"
KUBELET_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
export KUBECONFIG="$STATE/admin.kubeconfig"

log() { printf '[node] %s\n' "$*"; }
die() { printf '[node] ERROR: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
k() { "$BIN/kubectl" "$@"; }

# spawn NAME ARGV...: start a component in the background, log to $STATE/logs/NAME.log.
spawn() {
  local name="$1"
  shift
  nohup "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$STATE/pids"
}
# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
  local what="$1" seconds="$2" i
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "timed out after ${seconds}s waiting for $what"
  return 1
}
component_alive() { # NAME: still running?
  local pid
  pid="$(awk -v n="$1" '$1 == n {print $2}' "$STATE/pids" | tail -1)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

certs() {
  local d="$STATE/pki"
  mkdir -p "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj /CN=kubenenc-e2e-ca -days 2 -out "$d/ca.crt" 2>/dev/null
  # leaf NAME SUBJECT EXTENSIONS
  leaf() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$d/$1.key" 2>/dev/null
    openssl req -new -key "$d/$1.key" -subj "$2" -out "$d/$1.csr" 2>/dev/null
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile <(printf '%s\n' "$3") -out "$d/$1.crt" 2>/dev/null
  }
  leaf apiserver /CN=kube-apiserver \
    "subjectAltName=IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  leaf kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # Static tokens: token,user,uid,"groups"
  local admin kubelet scheduler kcm proxy
  admin="$(openssl rand -hex 16)" kubelet="$(openssl rand -hex 16)" scheduler="$(openssl rand -hex 16)"
  kcm="$(openssl rand -hex 16)" proxy="$(openssl rand -hex 16)"
  cat >"$d/tokens.csv" <<EOF
$admin,kubenenc-e2e-admin,admin,"system:masters"
$kubelet,system:node:$NODE,kubelet,"system:nodes"
$scheduler,system:kube-scheduler,scheduler
$kcm,system:kube-controller-manager,kcm
$proxy,system:kube-proxy,proxy
EOF
  kubeconfig "$STATE/admin.kubeconfig" "$admin" kubenenc-e2e-admin
  kubeconfig "$STATE/kubelet.kubeconfig" "$kubelet" "system:node:$NODE"
  kubeconfig "$STATE/scheduler.kubeconfig" "$scheduler" system:kube-scheduler
  kubeconfig "$STATE/kcm.kubeconfig" "$kcm" system:kube-controller-manager
  kubeconfig "$STATE/proxy.kubeconfig" "$proxy" system:kube-proxy
}

kubeconfig() { # PATH TOKEN USER
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubenenc-e2e
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $3
  user:
    token: $2
contexts:
- name: kubenenc-e2e
  context: {cluster: kubenenc-e2e, user: $3}
current-context: kubenenc-e2e
EOF
  chmod 600 "$1"
}

network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  # Pods talk to each other and to this host, never beyond it.
  iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$IPT_TAG" -j ACCEPT
  iptables -I FORWARD 2 -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$IPT_TAG" -j DROP
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-kubenenc.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kubenenc",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

network_down() {
  local rule
  while rule="$(iptables -S FORWARD | grep -m1 -- "--comment $IPT_TAG")"; do
    # shellcheck disable=SC2086 # the rule's own words
    iptables ${rule/-A /-D } || break
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
}

containerd_up() {
  mkdir -p "$DATA/containerd" "$STATE/containerd"
  cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$DATA/containerd"
state = "$STATE/containerd"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  address = "$STATE/containerd-debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/kubenenc-pause:3.10"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  spawn containerd containerd --config "$STATE/containerd.toml"
  wait_for containerd 30 ctr --address "$CTR_SOCK" version
}

load_image() { # TARBALL
  ctr --address "$CTR_SOCK" -n k8s.io images import "$1" >/dev/null
}

control_plane_up() {
  local etcd_port peer_port kcm_port sched_port
  etcd_port="$(free_port)" peer_port="$(free_port)" kcm_port="$(free_port)" sched_port="$(free_port)"
  spawn etcd "$BIN/etcd" --name=kubenenc-e2e --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="kubenenc-e2e=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level=warn
  local p="$STATE/pki"
  spawn kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --cert-dir="$STATE/apiserver-certs" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --token-auth-file="$p/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --kubelet-client-certificate="$p/kubelet-client.crt" --kubelet-client-key="$p/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP --profiling=false --v=1
  wait_for kube-apiserver 120 k get --raw /readyz
  spawn kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$STATE/kcm.kubeconfig" \
    --authentication-kubeconfig="$STATE/kcm.kubeconfig" --authorization-kubeconfig="$STATE/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true --v=1
  spawn kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false --v=1
}

node_up() {
  local healthz proxy_healthz proxy_metrics
  healthz="$(free_port)" proxy_healthz="$(free_port)" proxy_metrics="$(free_port)"
  mkdir -p "$DATA/kubelet"
  : >"$STATE/resolv.conf" # pods get the cluster DNS only; nothing from the host's resolver
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CTR_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
failSwapOn: false
protectKernelDefaults: false
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
podLogsDir: $DATA/pod-logs
EOF
  # The kubelet sets these kernel tunables (protectKernelDefaults: false); `down` puts the
  # host's values back.
  local key
  for key in $KUBELET_SYSCTLS; do
    echo "$key=$(sysctl -n "$key")" >>"$STATE/sysctl.saved"
  done
  spawn kubelet "$BIN/kubelet" --config="$STATE/kubelet.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
    --hostname-override="$NODE" --node-ip="$NODE_IP" --root-dir="$DATA/kubelet" --v=1
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/proxy.kubeconfig}
hostnameOverride: $NODE
healthzBindAddress: 127.0.0.1:$proxy_healthz
metricsBindAddress: 127.0.0.1:$proxy_metrics
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  spawn kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy.yaml" --v=1
  wait_for "node $NODE to register" 120 k get node "$NODE"
  k wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null
}

dns_up() {
  sed "s/@DNS_IP@/$DNS_IP/" "$HERE/coredns.yaml" | k apply -f - >/dev/null
  k -n kube-system rollout status deployment/coredns --timeout=120s
}

up() {
  [[ "$(id -u)" == 0 ]] || die "needs root"
  for tool in containerd runc ctr iptables ip openssl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  [[ -x /usr/lib/cni/bridge ]] || die "the CNI plugins are missing (apt-get install containernetworking-plugins)"
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing (tests/cluster/build-binaries.sh, tests/e2e/node/build.sh)"
  done
  if [[ -f "$STATE/pids" ]]; then
    log "a previous cluster's state is in $STATE: taking it down first"
    down
  fi
  local t0
  t0=$(date +%s)
  mkdir -p "$STATE/logs"
  : >"$STATE/pids"
  certs
  network_up
  containerd_up
  for image in kubenenc-pause kubenenc-coredns; do
    load_image "$CACHE_DIR/images/$image.tar"
  done
  control_plane_up
  log "control plane ready after $(($(date +%s) - t0)) s"
  node_up
  log "node $NODE Ready after $(($(date +%s) - t0)) s"
  dns_up
  log "cluster up in $(($(date +%s) - t0)) s; export KUBECONFIG=$KUBECONFIG"
}

# Stop a component by the pid `up` recorded: SIGTERM, then SIGKILL after GRACE seconds.
stop_component() {
  local name="$1" grace="${2:-10}" pid i
  pid="$(awk -v n="$name" '$1 == n {print $2}' "$STATE/pids" 2>/dev/null | tail -1)"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  if [[ -f "$STATE/pids" ]] && component_alive kube-apiserver && component_alive kubelet; then
    # Let the kubelet stop every pod (CNI teardown included) before it goes.
    k delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1 || true
    k delete pods --all -A --grace-period=2 --timeout=60s >/dev/null 2>&1 || true
  fi
  for name in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$name"
  done
  if [[ -S "$CTR_SOCK" ]]; then
    # Whatever the kubelet left: kill the tasks, then remove their sandboxes' network setup.
    local id
    for id in $(ctr --address "$CTR_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CTR_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(ctr --address "$CTR_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CTR_SOCK" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr --address "$CTR_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$CTR_SOCK" -n k8s.io containers rm "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_component containerd 20
  if [[ -f "$STATE/sysctl.saved" ]]; then
    sysctl -q -p "$STATE/sysctl.saved" >/dev/null || true
  fi
  [[ -x "$BIN/kube-proxy" ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  kube_chains_down
  # Unmount what is left under our directories (pod volumes, sandboxes' shm, rootfs).
  local m
  awk -v s="$STATE" -v d="$DATA" 'index($2, s) == 1 || index($2, d "/kubelet") == 1 || index($2, d "/containerd") == 1 {print $2}' /proc/mounts \
    | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  network_down
  rm -rf "$STATE" "$DATA/kubelet" "$DATA/pod-logs"
  log "down"
}

# After `kube-proxy --cleanup`, the KUBE-* chains left are the kubelet's (KUBE-FIREWALL,
# canaries): remove them and the jumps into them.
kube_chains_down() {
  local cmd table rule chain
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
      "$cmd" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | while read -r rule; do
        # shellcheck disable=SC2086 # the rule's own words
        "$cmd" -t "$table" ${rule/-A /-D } 2>/dev/null || true
      done || true
      for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
        "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
        "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

dump() {
  k get nodes -o wide || true
  k get pods -A -o wide || true
  k get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 || true
  local f
  for f in "$STATE"/logs/*.log; do
    echo "--- tail of $f"
    tail -n 15 "$f"
  done
}

# kill_container NAMESPACE POD CONTAINER: SIGKILL a container's process (a crash, for the
# steps' "a worker dies mid-work"); the kubelet then restarts it.
kill_container() {
  local id info try
  for try in $(seq 20); do # a container being (re)started has no task yet: try for 20 s
    for id in $(ctr --address "$CTR_SOCK" -n k8s.io containers ls -q); do
      info="$(ctr --address "$CTR_SOCK" -n k8s.io containers info "$id" 2>/dev/null)" || continue
      if grep -q "\"io.kubernetes.pod.namespace\": \"$1\"" <<<"$info" \
        && grep -q "\"io.kubernetes.pod.name\": \"$2\"" <<<"$info" \
        && grep -q "\"io.kubernetes.container.name\": \"$3\"" <<<"$info" \
        && ctr --address "$CTR_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" 2>/dev/null; then
        log "SIGKILL sent to container $3 of $1/$2 (try $try)"
        return 0
      fi
    done
    sleep 1
  done
  die "no running container $3 in $1/$2"
}

case "${1:-}" in
up) up ;;
down) down ;;
load) shift; for t in "$@"; do load_image "$t"; done ;;
kill-container) shift; kill_container "$@" ;;
dump) dump ;;
*) echo "usage: $0 up|load TARBALL...|down|dump|kill-container NS POD CONTAINER" >&2; exit 2 ;;
esac
