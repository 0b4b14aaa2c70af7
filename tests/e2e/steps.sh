#!/usr/bin/env bash
# The end-to-end steps on a cluster with real nodes, shared by tests/e2e/node/run.sh (this
# host's own node) and tests/e2e/kind/run.sh (kind on a Docker host). The images must already
# be on the node(s); kubectl and helm talk to the cluster of $KUBECONFIG (or KUBE_CONTEXT).
#
#   1. helm install the chart (operator image, bundled Redis); the operator becomes Ready
#   2. kubectl apply examples/shop/k8s/ (WorkerPool, ConcurrencyPolicies, TaskDefinitions)
#   3. ORDERS orders from outside (port-forward to Redis) and JOB_ORDERS from a Job inside the
#      cluster: every result exact; no two charges of a customer ran at once; then the
#      chart's dashboard pod, fetched through its Service, shows those calls, workers and
#      custom resources as the backend and the API server have them (dashboard_check.py)
#   4. the pool scaled out on the backlog and back in after it, then to zero and back
#      (measured: backlog to a Ready extra pod, scale-in after the backlog drained)
#   5. a worker killed mid-work (SIGKILL through $KILL_CONTAINER where the runner offers it, a
#      forced pod deletion otherwise): its calls finish elsewhere, every order right
#   6. the operator pod deleted: the new one takes the Lease and changes no Deployment
#   7. helm upgrade with a changed value, then helm uninstall (CRDs and custom resources stay)
#
# Environment:
#   KUBE_CONTEXT=          kubectl/helm context (default: the current one)
#   OPERATOR_IMAGE=kubenenc-operator:VERSION   REDIS_IMAGE= (repository:tag; empty: chart's)
#   PULL_POLICY=IfNotPresent   ORDERS=200   JOB_ORDERS=40   TIMEOUT=600
#   KILL_CONTAINER=            a command "NAMESPACE POD CONTAINER" that SIGKILLs a container
#   STEPS="install shop orders dashboard scale kill operator upgrade"   (uninstall always
#   runs last; dashboard needs orders)
# Prints `== name (N s)` per step, `MEASURED key=value` lines, and `== PASSED` at the end; on
# failure: pod states, events, and the operator's, workers' and Redis's logs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
VERSION="$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-kubenenc-operator:$VERSION}"
REDIS_IMAGE="${REDIS_IMAGE:-}"
PULL_POLICY="${PULL_POLICY:-IfNotPresent}"
ORDERS="${ORDERS:-200}"
JOB_ORDERS="${JOB_ORDERS:-40}"
TIMEOUT="${TIMEOUT:-600}"
STEPS="${STEPS:-install shop orders dashboard scale kill operator upgrade}"
SYSTEM_NS=kubenenc-system
SHOP_NS=shop
POOL=shop-workers
WORK="$(mktemp -d)"
PF_PID=""
DASH_PID=""
WATCH_PID=""

ctx=()
[[ -n "${KUBE_CONTEXT:-}" ]] && ctx=(--context "$KUBE_CONTEXT")
k() { kubectl "${ctx[@]}" "$@"; }
h() { helm ${KUBE_CONTEXT:+--kube-context "$KUBE_CONTEXT"} "$@"; }
T0=$(date +%s)
step_t=$T0
say() {
  local now
  now=$(date +%s)
  printf '\n== %s (previous step %d s, %d s in all)\n' "$*" $((now - step_t)) $((now - T0))
  step_t=$now
}
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
measured() { echo "MEASURED $*"; echo "$*" >>"$WORK/measured"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }
now_ms() { date +%s%3N; }

diagnostics() {
  echo "--- diagnostics" >&2
  {
    k get nodes -o wide
    k get pods -A -o wide
    k -n "$SHOP_NS" get kwp,kcp,ktd -o wide
    k get events -A --sort-by=.lastTimestamp | tail -n 40
    echo "--- operator logs"
    k -n "$SYSTEM_NS" logs deploy/kubenenc-operator --tail=80
    echo "--- dashboard logs"
    k -n "$SYSTEM_NS" logs deploy/kubenenc-dashboard --tail=30
    echo "--- redis logs"
    k -n "$SYSTEM_NS" logs deploy/kubenenc-redis --tail=20
    for pod in $(k -n "$SHOP_NS" get pods -o name); do
      echo "--- $pod"
      k -n "$SHOP_NS" describe "$pod" | tail -n 15
      k -n "$SHOP_NS" logs "$pod" --tail=30
    done
  } >&2 2>&1 || true
}
cleanup() {
  local code=$?
  [[ -n "$WATCH_PID" ]] && kill "$WATCH_PID" 2>/dev/null
  [[ -n "$PF_PID" ]] && kill "$PF_PID" 2>/dev/null
  [[ -n "$DASH_PID" ]] && kill "$DASH_PID" 2>/dev/null
  [[ $code -ne 0 ]] && diagnostics
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT

for tool in kubectl helm "$PY"; do command -v "$tool" >/dev/null || fail "$tool is not installed"; done
"$PY" -c 'import kubenenc_redis' 2>/dev/null || fail "needs the Redis plugin: python -m pip install -e \".[redis]\""

replicas() { k -n "$SHOP_NS" get deployment "$POOL" -o jsonpath='{.spec.replicas} {.status.readyReplicas}'; }
min_replicas() { k -n "$SHOP_NS" get kwp "$POOL" -o jsonpath='{.spec.autoscaling.minReplicas}'; }
# wait_until SECONDS CMD...: poll every second.
wait_until() {
  local seconds="$1" i
  shift
  for ((i = 0; i < seconds; i++)); do
    if "$@"; then return 0; fi
    sleep 1
  done
  return 1
}
spec_replicas_is() { [[ "$(k -n "$SHOP_NS" get deployment "$POOL" -o jsonpath='{.spec.replicas}')" == "$1" ]]; }
ready_replicas_is() { [[ "$(k -n "$SHOP_NS" get deployment "$POOL" -o jsonpath='{.status.readyReplicas}')" == "$1" ]]; }
# KUBENENC_NAMESPACE: calls go to the queues of the workers' namespace (kubenenc.scope).
orders() { KUBENENC_NAMESPACE="$SHOP_NS" "$PY" "$ROOT/tests/e2e/orders.py" --backend "$BACKEND" "$@"; }

# Keep a port-forward to the bundled Redis open (restarted if the pod or forward goes away).
port_forward() {
  PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  (while :; do
    k -n "$SYSTEM_NS" port-forward svc/kubenenc-redis "$PORT:6379" >>"$WORK/port-forward.log" 2>&1 || true
    sleep 1
  done) &
  PF_PID=$!
  PASSWORD="$(k -n "$SYSTEM_NS" get secret kubenenc-redis -o jsonpath='{.data.password}' | base64 -d)"
  BACKEND="redis://:$PASSWORD@127.0.0.1:$PORT/0"
  wait_until 30 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null \
    || fail "the port-forward to Redis did not open"
}
# Record the pool's replicas (spec, ready) with a timestamp in ms, every second.
watch_replicas() {
  (while :; do echo "$(now_ms) $(replicas 2>/dev/null)"; sleep 1; done) >"$WORK/replicas.log" &
  WATCH_PID=$!
}

# -- 1. install ---------------------------------------------------------------------------------
say "1. helm install (operator $OPERATOR_IMAGE, bundled Redis ${REDIS_IMAGE:-from the chart})"
set_args=(--set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}"
          --set "image.pullPolicy=$PULL_POLICY" --set redis.enabled=true --set dashboard.enabled=true
          # The in-cluster Job that submits orders may reach Redis where NetworkPolicy is enforced.
          --set-json 'redis.networkPolicy.extraFrom=[{"namespaceSelector":{},"podSelector":{"matchLabels":{"app.kubernetes.io/name":"shop-submit"}}}]')
if [[ -n "$REDIS_IMAGE" ]]; then
  set_args+=(--set "redis.image.repository=${REDIS_IMAGE%:*}" --set "redis.image.tag=${REDIS_IMAGE##*:}"
             --set "redis.image.pullPolicy=$PULL_POLICY")
fi
start=$(now_ms)
h install kubenenc "$ROOT/charts/kubenenc" --namespace "$SYSTEM_NS" --create-namespace \
  "${set_args[@]}" --wait --timeout 300s
for crd in workerpools taskdefinitions concurrencypolicies; do
  k wait --for=condition=Established "crd/$crd.kubenenc.io" --timeout=60s >/dev/null
done
k -n "$SYSTEM_NS" rollout status deployment/kubenenc-operator --timeout=120s
k -n "$SYSTEM_NS" rollout status deployment/kubenenc-dashboard --timeout=120s
measured "install_to_operator_ready_s=$(( ($(now_ms) - start) / 1000 ))"

# -- 2. shop ------------------------------------------------------------------------------------
say "2. kubectl apply examples/shop/k8s/"
k create namespace "$SHOP_NS"
URL="$(k -n "$SYSTEM_NS" get secret kubenenc-redis -o jsonpath='{.data.url}' | base64 -d)"
k -n "$SHOP_NS" create secret generic kubenenc-backend --from-literal=url="$URL"
k -n "$SHOP_NS" create secret generic shop-gateway --from-literal=api-key=sk-test-e2e1
k -n "$SHOP_NS" apply -f "$ROOT/examples/shop/k8s/"
wait_until 120 k -n "$SHOP_NS" get deployment "$POOL" >/dev/null 2>&1 || fail "no Deployment $POOL"
k -n "$SHOP_NS" rollout status "deployment/$POOL" --timeout=300s
for td in price charge checkout ship; do k -n "$SHOP_NS" wait --for=condition=Ready "ktd/$td" --timeout=120s; done
for cp in one-charge-per-customer one-checkout-per-order; do
  k -n "$SHOP_NS" wait --for=condition=Ready "kcp/$cp" --timeout=120s
done
k -n "$SHOP_NS" get pods -o wide
MIN="$(min_replicas)"
port_forward
# The shop's gateway fails 20% of tries and `charge` retries 3 times, so about 1 order in 600
# fails by design. Raise the retries through the TaskDefinition (the deployment's word, over
# the decorator's) so that every order must succeed, and check the change reaches the backend.
k -n "$SHOP_NS" patch ktd charge --type=merge -p '{"spec":{"retries":10}}'
orders retries shop.tasks.charge 10 || fail "the TaskDefinition change did not reach the backend"

# -- 3. orders ----------------------------------------------------------------------------------
if wants orders; then
  say "3. $ORDERS orders from outside the cluster, $JOB_ORDERS from a Job inside it"
  watch_replicas
  SUBMIT_MS=$(now_ms)
  orders submit --orders "$ORDERS" --prefix outside --timeout "$TIMEOUT" | tee "$WORK/outside.log" | tail -n 3
  DONE_MS=$(now_ms)
  grep -q "^ORDERS ok=$ORDERS of=$ORDERS" "$WORK/outside.log" || fail "not every order from outside was right"
  # From inside: the shop image itself submits (the Service name resolves through CoreDNS).
  k -n "$SHOP_NS" apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: submit-orders
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app.kubernetes.io/name: shop-submit}
    spec:
      restartPolicy: Never
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
      containers:
        - name: submit
          image: $(k -n "$SHOP_NS" get kwp "$POOL" -o jsonpath='{.spec.image}')
          imagePullPolicy: $PULL_POLICY
          command: [python3, -c]
          args:
            - |
              from shop.tasks import checkout, ship
              n = $JOB_ORDERS
              paid = [checkout(f"inside-{i:04d}", i % 5, [("book", 1), ("mug", 2)]) for i in range(n)]
              shipped = [ship.with_options(depends_on=[p])(f"inside-{i:04d}", i % 5) for i, p in enumerate(paid)]
              ok = sum(p.result(timeout=$TIMEOUT)["total"] == 28 for p in paid)
              ok_ship = sum(s.result(timeout=$TIMEOUT) == f"order inside-{i:04d} shipped to customer {i % 5}" for i, s in enumerate(shipped))
              print(f"JOB ok={min(ok, ok_ship)} of={n}")
              raise SystemExit(0 if ok == ok_ship == n else 1)
          env:
            - name: KUBENENC_BACKEND
              valueFrom: {secretKeyRef: {name: kubenenc-backend, key: url}}
            - name: KUBENENC_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
EOF
  k -n "$SHOP_NS" wait --for=condition=Complete job/submit-orders --timeout="${TIMEOUT}s" \
    || fail "the in-cluster Job did not complete"
  k -n "$SHOP_NS" logs job/submit-orders | tee "$WORK/job.log"
  grep -q "^JOB ok=$JOB_ORDERS of=$JOB_ORDERS" "$WORK/job.log" || fail "the Job's orders were not all right"
  orders policy | tee "$WORK/policy.log" | tail -n 5
  grep -q "overlaps=0" "$WORK/policy.log" || fail "two charges of one customer ran at once"
  measured "orders_outside=$ORDERS orders_seconds=$(( (DONE_MS - SUBMIT_MS) / 1000 ))"
fi

# -- 3b. the dashboard on a real pod ------------------------------------------------------------
if wants dashboard && wants orders; then
  say "3b. the chart's dashboard pod, through its Service, shows the cluster's real calls and pools"
  DASH_PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  k -n "$SYSTEM_NS" port-forward svc/kubenenc-dashboard "$DASH_PORT:80" >"$WORK/dash-forward.log" 2>&1 &
  DASH_PID=$!
  wait_until 30 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $DASH_PORT), 1)" 2>/dev/null \
    || fail "the port-forward to the dashboard did not open"
  PODS="$(k -n "$SHOP_NS" get pods -o name | grep "$POOL" | sed 's|^pod/||' | paste -sd, -)"
  SCALINGS="$(k -n "$SHOP_NS" get kwp "$POOL" -o jsonpath='{.status.scalingEvents[*].toReplicas}' | wc -w)"
  start=$(now_ms)
  KUBENENC_NAMESPACE="$SHOP_NS" "$PY" "$ROOT/tests/e2e/dashboard_check.py" --backend "$BACKEND" \
    --url "http://127.0.0.1:$DASH_PORT" --pods "$PODS" --namespace "$SHOP_NS" --scalings "$SCALINGS" \
    | tee "$WORK/dashboard.log" || true
  grep -q "^DASHBOARD ok" "$WORK/dashboard.log" || fail "the dashboard on the cluster did not show what the backend holds"
  measured "dashboard_check_s=$(( ($(now_ms) - start) / 1000 ))"
  kill "$DASH_PID" 2>/dev/null || true
  DASH_PID=""
fi

# -- 4. scaling ---------------------------------------------------------------------------------
if wants scale && wants orders; then
  say "4. scale out on the backlog, back in after it, to zero and back"
  MAX="$(awk '{print $2}' "$WORK/replicas.log" | sort -n | tail -1)"
  [[ "${MAX:-0}" -gt "$MIN" ]] || fail "the pool never scaled out (max $MAX, min $MIN)"
  # First moment a pod beyond the minimum was Ready, after the orders went in.
  FIRST_READY="$(awk -v t="$SUBMIT_MS" -v m="$MIN" '$1 >= t && $3 > m {print $1; exit}' "$WORK/replicas.log")"
  [[ -n "$FIRST_READY" ]] || fail "no extra pod ever became Ready"
  measured "max_replicas=$MAX backlog_to_ready_pod_s=$(( (FIRST_READY - SUBMIT_MS) / 1000 ))"
  wait_until 300 spec_replicas_is "$MIN" || fail "the pool did not scale back in to $MIN"
  measured "scale_in_after_backlog_s=$(( ($(now_ms) - DONE_MS) / 1000 ))"
  kill "$WATCH_PID" 2>/dev/null || true
  WATCH_PID=""
  start=$(now_ms)
  k -n "$SHOP_NS" patch kwp "$POOL" --type=merge -p '{"spec":{"autoscaling":{"minReplicas":0}}}'
  wait_until 300 spec_replicas_is 0 || fail "the pool did not scale to zero"
  measured "scale_to_zero_s=$(( ($(now_ms) - start) / 1000 ))"
  start=$(now_ms)
  orders submit --orders 10 --prefix fromzero --timeout "$TIMEOUT" | tail -n 1 | tee "$WORK/zero.log"
  grep -q "^ORDERS ok=10 of=10" "$WORK/zero.log" || fail "orders submitted at zero pods did not finish"
  measured "from_zero_10_orders_s=$(( ($(now_ms) - start) / 1000 ))"
  k -n "$SHOP_NS" patch kwp "$POOL" --type=merge -p "{\"spec\":{\"autoscaling\":{\"minReplicas\":$MIN}}}"
  wait_until 300 ready_replicas_is "$MIN" || fail "the pool did not come back to $MIN Ready pods"
fi

# -- 5. a worker dies mid-work -----------------------------------------------------------------
if wants kill; then
  orders submit --orders 100 --prefix killed --timeout "$TIMEOUT" >"$WORK/killed.log" 2>&1 &
  SUBMIT_PID=$!
  sleep 3
  # A pod whose worker runs and stays: Ready, and not being deleted (a pod the backlog just
  # added may still be starting; one the scale-in is removing still says Running).
  VICTIM="$(k -n "$SHOP_NS" get pods --field-selector=status.phase=Running --no-headers \
    -o custom-columns='NAME:.metadata.name,GONE:.metadata.deletionTimestamp,READY:.status.containerStatuses[0].ready' \
    | awk '$2 == "<none>" && $3 == "true" { print "pod/" $1 }' | grep "$POOL" | head -1)"
  [[ -n "$VICTIM" ]] || fail "no running worker pod to kill"
  if [[ -n "${KILL_CONTAINER:-}" ]]; then
    # A crash: SIGKILL the worker process (the kubelet restarts the container); its heartbeats
    # stop and the operator hands its work back after the heartbeat timeout.
    say "5. SIGKILL the worker in ${VICTIM#pod/} while it runs work, then force-delete another pod"
    $KILL_CONTAINER "$SHOP_NS" "${VICTIM#pod/}" worker
    sleep 2
    OTHER="$(k -n "$SHOP_NS" get pods -o name | grep "$POOL" | grep -v "$VICTIM" | head -1)"
    [[ -z "$OTHER" ]] || k -n "$SHOP_NS" delete "$OTHER" --grace-period=0 --force
  else
    say "5. force-delete a worker pod while it runs work"
    k -n "$SHOP_NS" delete "$VICTIM" --grace-period=0 --force
  fi
  wait "$SUBMIT_PID" || true
  tail -n 1 "$WORK/killed.log"
  grep -q "^ORDERS ok=100 of=100" "$WORK/killed.log" || fail "orders were lost or wrong after a worker died"
  orders lost | tee "$WORK/lost.log"
  measured "$(sed 's/^LOST //' "$WORK/lost.log")"
fi

# -- 6. the operator pod goes -------------------------------------------------------------------
if wants operator; then
  say "6. delete the operator pod: a new one takes the Lease and changes nothing spuriously"
  holder() { k -n "$SYSTEM_NS" get lease -o jsonpath='{range .items[*]}{.spec.holderIdentity}{"\n"}{end}' | grep . | head -1; }
  OLD_HOLDER="$(holder)"
  # Let the pool settle at its minimum first: a scale-in still under way is no spurious change.
  wait_until 300 spec_replicas_is "$MIN" || fail "the pool did not settle at $MIN replicas"
  wait_until 120 ready_replicas_is "$MIN" || fail "the pool's $MIN pods did not become Ready"
  sleep 5
  GEN_BEFORE="$(k -n "$SHOP_NS" get deployment "$POOL" -o jsonpath='{.metadata.generation} {.spec.replicas}')"
  OLD_POD="$(k -n "$SYSTEM_NS" get pods -o name | grep operator | head -1)"
  start=$(now_ms)
  k -n "$SYSTEM_NS" delete "$OLD_POD" --wait=true
  k -n "$SYSTEM_NS" rollout status deployment/kubenenc-operator --timeout=180s
  new_holder() { local h; h="$(holder)"; [[ -n "$h" && "$h" != "$OLD_HOLDER" ]]; }
  wait_until 120 new_holder || fail "the new operator pod never took the Lease (held by $(holder))"
  measured "operator_takeover_s=$(( ($(now_ms) - start) / 1000 ))"
  echo "Lease: $OLD_HOLDER -> $(holder)"
  sleep 20 # a few scaling and status rounds of the new leader
  GEN_AFTER="$(k -n "$SHOP_NS" get deployment "$POOL" -o jsonpath='{.metadata.generation} {.spec.replicas}')"
  [[ "$GEN_BEFORE" == "$GEN_AFTER" ]] || fail "the new operator changed $POOL (generation, replicas: $GEN_BEFORE -> $GEN_AFTER)"
  echo "Deployment $POOL unchanged (generation, replicas: $GEN_AFTER)"
fi

# -- 7. upgrade, uninstall ----------------------------------------------------------------------
if wants upgrade; then
  say "7a. helm upgrade with a changed value (operator.scaleIntervalSeconds=2)"
  PW_BEFORE="$PASSWORD"
  h upgrade kubenenc "$ROOT/charts/kubenenc" --namespace "$SYSTEM_NS" --reuse-values \
    --set operator.scaleIntervalSeconds=2 --wait --timeout 300s
  k -n "$SYSTEM_NS" rollout status deployment/kubenenc-operator --timeout=180s
  k -n "$SYSTEM_NS" get deployment kubenenc-operator -o yaml | grep -A1 -i "SCALE_INTERVAL" | tee "$WORK/upgrade.log"
  grep -q '"2"' "$WORK/upgrade.log" || fail "the upgraded operator does not run with the new value"
  PW_AFTER="$(k -n "$SYSTEM_NS" get secret kubenenc-redis -o jsonpath='{.data.password}' | base64 -d)"
  [[ "$PW_BEFORE" == "$PW_AFTER" ]] || fail "helm upgrade changed the bundled Redis's password"
  orders submit --orders 10 --prefix upgraded --timeout "$TIMEOUT" | tail -n 1 | tee "$WORK/upgraded.log"
  grep -q "^ORDERS ok=10 of=10" "$WORK/upgraded.log" || fail "orders after the upgrade did not finish"
fi

say "7b. uninstall: the shop's resources (while the operator runs), then the release"
kill "$PF_PID" 2>/dev/null || true
PF_PID=""
k -n "$SHOP_NS" delete -f "$ROOT/examples/shop/k8s/" --timeout=120s
h uninstall kubenenc --namespace "$SYSTEM_NS" --wait --timeout 120s
for crd in workerpools taskdefinitions concurrencypolicies; do
  k get "crd/$crd.kubenenc.io" >/dev/null || fail "helm uninstall removed crd/$crd (the chart README says it stays)"
done
[[ -z "$(k -n "$SYSTEM_NS" get deployments -o name)" ]] || fail "deployments left in $SYSTEM_NS after uninstall"
k delete namespace "$SHOP_NS" --wait=false >/dev/null

say "PASSED"
cat "$WORK/measured" 2>/dev/null || true
