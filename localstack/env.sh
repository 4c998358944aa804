#!/usr/bin/env bash
# The local AWS environment: Redis as ElastiCache Multi-AZ gives it (a primary, a replica and
# three Sentinels behind one primary endpoint), LocalStack in host mode with the host Lambda
# executor, and the payment sandbox (tools/payment-sandbox, a stand-in for Stripe's API that
# sends signed webhooks). Run install.sh first.
#
#   env.sh start     start everything (harmless if already running); waits until ready
#   env.sh stop      stop everything, including every Lambda process LocalStack started
#   env.sh status    print what runs; exit 0 if all is up, 3 otherwise
#   env.sh restart   stop, then start
#   env.sh heal-redis  resume a stopped data node; restart one that died, as a replica of the
#                      current primary
#
# The two fault points (tools/fault-proxy; with no fault set they only forward, the chaos suite
# drives them through their control ports):
#   - the Redis primary endpoint 127.0.0.1:$FLASHSALE_REDIS_PORT (default 6379) follows Sentinel
#     to the current primary, as ElastiCache moves its primary endpoint's DNS name (control 6398);
#     the data nodes listen on 6390 and 6391, the Sentinels on 26390-26392;
#   - the AWS endpoint 127.0.0.1:4567 forwards to LocalStack (4566); the functions reach
#     DynamoDB and Step Functions through it (control 6397).
#
# Everything listens on 127.0.0.1 only. State, logs and pid files live in <repo>/.local/.
# Environment: FLASHSALE_REDIS_PORT (default 6379), FLASHSALE_START_TIMEOUT (s, default 90),
# FLASHSALE_LOCALSTACK_DEBUG=1 for LocalStack's debug log, FLASHSALE_SANDBOX_PORT (default
# 12111). The sandbox's webhook URL is set by infra/deploy-local.sh once the API exists.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
SHIM="$LOCAL/lib/bind_loopback.so"
REDIS_PORT="${FLASHSALE_REDIS_PORT:-6379}"
LS_PORT=4566
LS_URL="http://127.0.0.1:$LS_PORT"
START_TIMEOUT="${FLASHSALE_START_TIMEOUT:-90}"

SANDBOX_PORT="${FLASHSALE_SANDBOX_PORT:-12111}"
SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"
SANDBOX_BIN="$ROOT/target/debug/payment-sandbox"
PROXY_BIN="$ROOT/target/debug/fault-proxy"

# The Redis group: two data nodes (either may be the primary after a failover), three Sentinels
# (quorum 2), the endpoint in front of them. Sentinel settings as testkit/src/sentinel.rs, whose
# failover tests measured them: a killed primary is replaced in about 2 s.
REDIS_NODE_PORTS=(6390 6391)
SENTINEL_PORTS=(26390 26391 26392)
SENTINEL_MASTER=fs
REDIS_CONTROL_PORT=6398
AWS_PROXY_PORT=4567
AWS_CONTROL_PORT=6397

LS_PID="$RUN/localstack.pid"
SANDBOX_PID="$RUN/payment-sandbox.pid"
ENDPOINT_PID="$RUN/redis-endpoint.pid"
AWS_PROXY_PID="$RUN/aws-proxy.pid"

say() { printf '[env] %s\n' "$*"; }
die() { printf '[env] error: %s\n' "$*" >&2; exit 1; }

# pid_alive FILE PATTERN: the pid in FILE runs and its command line contains PATTERN
# (guards against a stale pid file whose number now belongs to someone else).
pid_alive() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ -n "$pid" ]] && running "$pid" || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

localstack_up() {
    # The gateway answers health early; init/ready completes when LocalStack is "Ready."
    curl -fsS --max-time 2 "$LS_URL/_localstack/health" >/dev/null 2>&1 &&
        curl -fsS --max-time 2 "$LS_URL/_localstack/init/ready" 2>/dev/null | grep -q '"completed": *true'
}

port_in_use() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

# running: the process exists and is not a zombie. Our daemons are re-parented to
# PID 1, which may take seconds to reap them; a zombie is already dead.
running() { [[ -r "/proc/$1/stat" ]] && ! awk '{ exit ($3 == "Z" ? 0 : 1) }' "/proc/$1/stat" 2>/dev/null; }

# pids of every live process in session SID (LocalStack and all it started, including
# the Lambda bootstraps, which sit in process groups of their own inside the session)
session_pids() { ps -eo pid=,sid=,stat= | awk -v sid="$1" '$2 == sid && $3 !~ /^Z/ { print $1 }'; }

# wait_for TRIES WHAT CHECK...: runs CHECK every 50 ms until it succeeds; dies with WHAT if not
wait_for() {
    local tries=$1 what=$2
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" && return 0
        sleep 0.05
    done
    die "$what"
}

# start_daemon NAME CMD...: runs CMD in a session of its own, logs to NAME.log (the last run's
# kept as NAME.log.1), pid in NAME.pid.
start_daemon() {
    local name=$1
    shift
    [[ -f "$LOGS/$name.log" ]] && mv "$LOGS/$name.log" "$LOGS/$name.log.1"
    setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

node_up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
replica_synced() { redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | grep -q 'master_link_status:up'; }
sentinel_sees_group() {
    local info
    info="$(redis-cli -h 127.0.0.1 -p "$1" sentinel master "$SENTINEL_MASTER" 2>/dev/null)" || return 1
    [[ "$(grep -A1 -x num-slaves <<<"$info" | tail -1)" == 1 &&
        "$(grep -A1 -x num-other-sentinels <<<"$info" | tail -1)" == 2 ]]
}

build_proxy() {
    # ./dev build and ./dev test build it with the workspace; build it here only if missing.
    if [[ ! -x "$PROXY_BIN" ]]; then
        (cd "$ROOT" && cargo build -q --locked -p fault-proxy) || die "could not build tools/fault-proxy"
    fi
}

redis_group_running() {
    local port
    for port in "${REDIS_NODE_PORTS[@]}"; do pid_alive "$RUN/redis-$port.pid" redis-server || return 1; done
    for port in "${SENTINEL_PORTS[@]}"; do pid_alive "$RUN/sentinel-$port.pid" redis-server || return 1; done
    pid_alive "$ENDPOINT_PID" fault-proxy
}

start_redis() {
    if redis_group_running && redis_up; then
        say "redis already running (endpoint 127.0.0.1:$REDIS_PORT, pid $(cat "$ENDPOINT_PID"))"
        return
    fi
    # A group that is partly up (a node killed by a test, say) starts over.
    stop_redis
    local port
    for port in "$REDIS_PORT" "$REDIS_CONTROL_PORT" "${REDIS_NODE_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
        port_in_use "$port" && die "port $port is taken by another process (FLASHSALE_REDIS_PORT sets the endpoint's)"
    done
    build_proxy
    rm -rf "$LOCAL/redis"
    local primary=${REDIS_NODE_PORTS[0]} replica=${REDIS_NODE_PORTS[1]}
    # No persistence: an empty Redis on every start, like a fresh ElastiCache.
    for port in "${REDIS_NODE_PORTS[@]}"; do
        local extra=()
        [[ $port == "$replica" ]] && extra=(--replicaof 127.0.0.1 "$primary")
        mkdir -p "$LOCAL/redis/$port"
        start_daemon "redis-$port" redis-server --bind 127.0.0.1 --port "$port" --save "" \
            --appendonly no --dir "$LOCAL/redis/$port" --daemonize no --protected-mode yes "${extra[@]}"
    done
    for port in "${REDIS_NODE_PORTS[@]}"; do
        wait_for 200 "redis on $port did not start (log: $LOGS/redis-$port.log)" node_up "$port"
    done
    wait_for 400 "the replica on $replica did not sync (log: $LOGS/redis-$replica.log)" replica_synced "$replica"
    for port in "${SENTINEL_PORTS[@]}"; do
        # Sentinel rewrites its file as it learns the group: a fresh one each start.
        cat >"$LOCAL/redis/sentinel-$port.conf" <<EOF
port $port
bind 127.0.0.1
dir $LOCAL/redis
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $primary 2
sentinel down-after-milliseconds $SENTINEL_MASTER 1000
sentinel failover-timeout $SENTINEL_MASTER 5000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
        start_daemon "sentinel-$port" redis-server "$LOCAL/redis/sentinel-$port.conf" --sentinel
    done
    for port in "${SENTINEL_PORTS[@]}"; do
        wait_for 600 "sentinel $port does not see the group (log: $LOGS/sentinel-$port.log)" sentinel_sees_group "$port"
    done
    local sentinels
    sentinels="$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")"
    start_daemon redis-endpoint "$PROXY_BIN" redis --listen "$REDIS_PORT" \
        --target "127.0.0.1:$primary" --sentinels "${sentinels%,}" --control "$REDIS_CONTROL_PORT"
    echo "$REDIS_PORT" >"$RUN/redis.port"
    wait_for 200 "the redis endpoint did not start (log: $LOGS/redis-endpoint.log)" redis_up
    say "redis up: primary 127.0.0.1:$primary, replica 127.0.0.1:$replica, sentinels ${SENTINEL_PORTS[*]}, endpoint 127.0.0.1:$REDIS_PORT (pid $(cat "$ENDPOINT_PID"))"
}

# stop_redis: the endpoint, the Sentinels (before the data nodes, so that they start no
# failover), then the data nodes.
stop_redis() {
    local port
    stop_session "$ENDPOINT_PID" fault-proxy "redis endpoint"
    for port in "${SENTINEL_PORTS[@]}"; do stop_session "$RUN/sentinel-$port.pid" redis-server "sentinel $port"; done
    for port in "${REDIS_NODE_PORTS[@]}"; do stop_session "$RUN/redis-$port.pid" redis-server "redis $port"; done
    rm -f "$RUN/redis.port"
}

# The primary now, as the Sentinels see it (host:port), or nothing.
redis_primary() {
    local port
    for port in "${SENTINEL_PORTS[@]}"; do
        redis-cli -h 127.0.0.1 -p "$port" sentinel get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null | paste -sd: - && return
    done
}

aws_proxy_up() { curl -fsS --max-time 2 "http://127.0.0.1:$AWS_CONTROL_PORT/calls" >/dev/null 2>&1; }

start_aws_proxy() {
    if pid_alive "$AWS_PROXY_PID" fault-proxy && aws_proxy_up; then
        say "aws fault proxy already running (pid $(cat "$AWS_PROXY_PID"), 127.0.0.1:$AWS_PROXY_PORT)"
        return
    fi
    stop_session "$AWS_PROXY_PID" fault-proxy "aws fault proxy"
    port_in_use "$AWS_PROXY_PORT" && die "port $AWS_PROXY_PORT is taken by another process"
    port_in_use "$AWS_CONTROL_PORT" && die "port $AWS_CONTROL_PORT is taken by another process"
    build_proxy
    start_daemon aws-proxy "$PROXY_BIN" aws --listen "$AWS_PROXY_PORT" --upstream "$LS_URL" --control "$AWS_CONTROL_PORT"
    wait_for 200 "the aws fault proxy did not start (log: $LOGS/aws-proxy.log)" aws_proxy_up
    say "aws fault proxy up (127.0.0.1:$AWS_PROXY_PORT -> $LS_URL, pid $(cat "$AWS_PROXY_PID"))"
}

start_localstack() {
    if pid_alive "$LS_PID" localstack.runtime.main; then
        say "localstack already running (pid $(cat "$LS_PID"))"
    else
        kill_stragglers
        port_in_use "$LS_PORT" && die "port $LS_PORT is taken by another process"
        # LocalStack keeps no state across restarts; drop the last run's unzipped code.
        rm -rf "$LOCAL/tmp"
        mkdir -p "$LOCAL/localstack" "$LOCAL/tmp"
        [[ -f "$LOGS/localstack.log" ]] && mv "$LOGS/localstack.log" "$LOGS/localstack.log.1"
        # setsid: LocalStack leads its own session, so stop can find every process it
        # started. LAMBDA_LIMITS_CONCURRENT_EXECUTIONS: the account's Lambda concurrency (AWS
        # default and LocalStack's: 1000) is kept well under the gateway's 1000 worker threads
        # (GATEWAY_WORKER_COUNT). A synchronous invocation holds a worker while it waits, and its
        # result comes back through another: at 1000 in flight every worker waits for a result
        # no worker can take, and LocalStack hangs (seen in the chaos suite's long form, with the
        # provider slow and every webhook sent twice). At 400 the excess is throttled (429), as
        # AWS throttles past the account's limit. SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL: queue
        # depths reach CloudWatch every 10 s (LocalStack's default 60 s), so the backlog alarm
        # of the drain test (e2e/test_backlog.py) sees a backlog within its minute.
        # LD_PRELOAD: its gateway and DynamoDB Local bind the wildcard
        # address whatever GATEWAY_LISTEN says; the shim moves them to loopback.
        env \
            OVERRIDE_IN_DOCKER=0 \
            FILESYSTEM_ROOT="$LOCAL/localstack" \
            TMPDIR="$LOCAL/tmp" \
            GATEWAY_LISTEN="127.0.0.1:$LS_PORT" \
            LOCALSTACK_HOST="127.0.0.1:$LS_PORT" \
            DNS_ADDRESS=0 \
            SKIP_SSL_CERT_DOWNLOAD=1 \
            DISABLE_EVENTS=1 \
            SQS_ENDPOINT_STRATEGY=path \
            LAMBDA_RUNTIME_EXECUTOR=host \
            LAMBDA_LIMITS_CONCURRENT_EXECUTIONS=400 \
            SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL=10 \
            SERVICES=lambda,logs,dynamodb,dynamodbstreams,sqs,sns,ses,cloudwatch,stepfunctions,events,iam,sts,cloudformation,s3,ssm,apigateway \
            DEBUG="${FLASHSALE_LOCALSTACK_DEBUG:-0}" \
            PYTHONUNBUFFERED=1 \
            LD_PRELOAD="$SHIM" \
            setsid "$VENV/bin/python" -m localstack.runtime.main \
            </dev/null >>"$LOGS/localstack.log" 2>&1 &
        echo $! >"$LS_PID"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until localstack_up; do
        if ! pid_alive "$LS_PID" localstack.runtime.main; then
            tail -n 30 "$LOGS/localstack.log" >&2 || true
            die "localstack exited during start (log: $LOGS/localstack.log)"
        fi
        ((SECONDS < deadline)) || die "localstack not ready after ${START_TIMEOUT}s (log: $LOGS/localstack.log)"
        sleep 0.1
    done
    say "localstack ready at $LS_URL (pid $(cat "$LS_PID"))"
}

# descendants PID: every live process below PID in the parent tree, right now
descendants() {
    ps -eo pid=,ppid=,stat= | awk -v root="$1" '
        $3 !~ /^Z/ { parent[$1] = $2 }
        END {
            for (p in parent) {
                q = p
                while ((q in parent) && q != root && q > 1) q = parent[q]
                if (q == root && p != root) print p
            }
        }'
}

# stop_session PIDFILE PATTERN NAME: SIGTERM the leader's process group, wait for a
# graceful exit, then SIGKILL whatever is left in its session and of its process tree.
# Lambda bootstraps have process groups of their own but stay in LocalStack's session;
# DynamoDB Local gets a session of its own but is LocalStack's child, hence both lists.
stop_session() {
    local pidfile=$1 pattern=$2 name=$3 pid tree left
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        return
    fi
    pid="$(cat "$pidfile")"
    tree="$(descendants "$pid")"  # before the leader dies and its children are re-parented
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do  # up to 15 s for a graceful shutdown
        running "$pid" || break
        sleep 0.1
    done
    for _ in $(seq 1 50); do
        left="$(session_pids "$pid"; for p in $tree; do if running "$p"; then echo "$p"; fi; done)"
        [[ -z "$left" ]] && break
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        sleep 0.1
    done
    [[ -z "$left" ]] || die "$name: processes $left survived SIGKILL"
    rm -f "$pidfile"
    say "$name stopped"
}

# lambda_pids: bootstraps of this checkout (they work in LocalStack's TMPDIR)
lambda_pids() {
    # (find complains about processes that vanish meanwhile: not an error here)
    { find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$LOCAL/tmp/*" 2>/dev/null || true; } | cut -d/ -f3
}

# stragglers: processes left by a LocalStack of this checkout that died hard (its
# children were re-parented): DynamoDB Local runs from our FILESYSTEM_ROOT, Lambda
# bootstraps work in our TMPDIR. Both paths are unique to this checkout.
stragglers() {
    {
        ps -eo pid=,args= | awk -v m="$LOCAL/localstack/" 'index($0, m) { print $1 }'
        lambda_pids
    } | sort -u | while read -r p; do if running "$p"; then echo "$p"; fi; done
}

kill_stragglers() {
    local left
    for _ in $(seq 1 20); do
        left="$(stragglers)"
        [[ -z "$left" ]] && return
        say "killing leftover processes: $(echo $left)"
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        sleep 0.1
    done
    die "leftover processes survived SIGKILL: $left"
}

sandbox_up() { curl -fsS --max-time 2 "$SANDBOX_URL/_sandbox/switches" >/dev/null 2>&1; }

start_sandbox() {
    if pid_alive "$SANDBOX_PID" payment-sandbox && sandbox_up; then
        say "payment sandbox already running (pid $(cat "$SANDBOX_PID"), $SANDBOX_URL)"
        return
    fi
    port_in_use "$SANDBOX_PORT" && die "port $SANDBOX_PORT is taken by another process (set FLASHSALE_SANDBOX_PORT)"
    # A debug build is enough for a stand-in whose answers take 0.5-2 s on purpose.
    # ./dev build and ./dev test build it with the workspace; build it here only if missing.
    if [[ ! -x "$SANDBOX_BIN" ]]; then
        (cd "$ROOT" && cargo build -q --locked -p payment-sandbox) || die "could not build the payment sandbox"
    fi
    [[ -f "$LOGS/payment-sandbox.log" ]] && mv "$LOGS/payment-sandbox.log" "$LOGS/payment-sandbox.log.1"
    # The keys are the sandbox's fixed test values, which the local stack also uses
    # (infra/lib/config.ts DEFAULTS). Real Stripe keys never go here.
    setsid "$SANDBOX_BIN" --listen "127.0.0.1:$SANDBOX_PORT" \
        --secret-key sk_test_sandbox --webhook-secret whsec_sandbox \
        </dev/null >>"$LOGS/payment-sandbox.log" 2>&1 &
    echo $! >"$SANDBOX_PID"
    for _ in $(seq 1 100); do
        sandbox_up && { say "payment sandbox up (pid $(cat "$SANDBOX_PID"), $SANDBOX_URL)"; return; }
        pid_alive "$SANDBOX_PID" payment-sandbox || break
        sleep 0.05
    done
    tail -n 20 "$LOGS/payment-sandbox.log" >&2 || true
    die "payment sandbox did not start (log: $LOGS/payment-sandbox.log)"
}

cmd_start() {
    [[ -x "$VENV/bin/python" && -f "$SHIM" ]] || die "not installed: run $HERE/install.sh"
    mkdir -p "$RUN" "$LOGS"
    start_redis
    start_sandbox
    start_aws_proxy
    start_localstack
}

# A data node that died (the chaos suite kills the primary) comes back as a replica of the
# primary Sentinel promoted, as ElastiCache replaces a failed node.
cmd_heal_redis() {
    local port primary
    # A node a fault left stopped (SIGSTOP) goes on first.
    for port in "${REDIS_NODE_PORTS[@]}"; do
        pid_alive "$RUN/redis-$port.pid" redis-server && kill -CONT "$(cat "$RUN/redis-$port.pid")" 2>/dev/null || true
    done
    primary="$(redis_primary)"
    [[ -n "$primary" ]] || die "no Sentinel knows a primary"
    for port in "${REDIS_NODE_PORTS[@]}"; do
        pid_alive "$RUN/redis-$port.pid" redis-server && continue
        [[ "127.0.0.1:$port" == "$primary" ]] && die "the primary $primary is down and no replica was promoted yet"
        rm -rf "$LOCAL/redis/$port" && mkdir -p "$LOCAL/redis/$port"
        start_daemon "redis-$port" redis-server --bind 127.0.0.1 --port "$port" --save "" \
            --appendonly no --dir "$LOCAL/redis/$port" --daemonize no --protected-mode yes \
            --replicaof "${primary%:*}" "${primary#*:}"
        wait_for 200 "redis on $port did not start (log: $LOGS/redis-$port.log)" node_up "$port"
        wait_for 400 "redis on $port did not sync with $primary" replica_synced "$port"
        say "redis $port is back as a replica of $primary"
    done
}

cmd_stop() {
    stop_session "$LS_PID" localstack.runtime.main localstack
    kill_stragglers
    stop_session "$AWS_PROXY_PID" fault-proxy "aws fault proxy"
    stop_session "$SANDBOX_PID" payment-sandbox "payment sandbox"
    stop_redis
}

cmd_status() {
    local ok=0
    if redis_group_running && redis_up; then
        say "redis: running (endpoint 127.0.0.1:$REDIS_PORT -> primary $(redis_primary), pid $(cat "$ENDPOINT_PID"))"
    elif redis_up; then
        say "redis: degraded (a data node or Sentinel is down; env.sh heal-redis brings a node back)"
        ok=3
    else
        say "redis: not running"
        ok=3
    fi
    if pid_alive "$AWS_PROXY_PID" fault-proxy && aws_proxy_up; then
        say "aws fault proxy: running (pid $(cat "$AWS_PROXY_PID"), 127.0.0.1:$AWS_PROXY_PORT -> $LS_URL)"
    else
        say "aws fault proxy: not running"
        ok=3
    fi
    if pid_alive "$SANDBOX_PID" payment-sandbox && sandbox_up; then
        say "payment sandbox: running (pid $(cat "$SANDBOX_PID"), $SANDBOX_URL)"
    else
        say "payment sandbox: not running"
        ok=3
    fi
    if pid_alive "$LS_PID" localstack.runtime.main && localstack_up; then
        say "localstack: running (pid $(cat "$LS_PID"), $LS_URL, lambda processes: $(lambda_pids | wc -l))"
    elif pid_alive "$LS_PID" localstack.runtime.main; then
        say "localstack: starting or unhealthy (pid $(cat "$LS_PID"))"
        ok=3
    else
        say "localstack: not running"
        ok=3
    fi
    return $ok
}

# A running Redis keeps the port it was started with, whatever FLASHSALE_REDIS_PORT says now.
if pid_alive "$ENDPOINT_PID" fault-proxy && [[ -f "$RUN/redis.port" ]]; then
    REDIS_PORT="$(cat "$RUN/redis.port")"
fi

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    heal-redis) cmd_heal_redis ;;
    *) echo "usage: $0 start|stop|status|restart|heal-redis" >&2; exit 2 ;;
esac
