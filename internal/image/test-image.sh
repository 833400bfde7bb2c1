#!/usr/bin/env bash
# test-image.sh REF: runs the jsplan image REF under podman and runc as the
# jsplan Tekton Task runs it, and checks what a user of the Task relies on.
#
# The container gets what the Task's pod gives the step: the repository as the
# read-only plan workspace (the working directory), a writable artifacts
# workspace, a read-only image workspace with the image to flash, a read-only
# credentials workspace with params.yaml, the scratch volume and the results
# directory. It runs the Task's own script, taken from
# tekton/task/jsplan/0.1/jsplan.yaml, under a stand-in for Tekton's entrypoint
# that, like it, passes the signals it gets to the script's process group.
# The image's user is kept (USER 1000), no network, no new privileges.
#
# Checks: the user and its groups (dialout, plugdev); jsplan, ansible-playbook
# and ssh run; plans/examples/virtual-smoke.yaml on the built-in virtual board
# passes and leaves console.log, report.json and junit.xml, with the password
# from the credentials nowhere in them; an invalid plan exits 2; a SIGTERM to
# the container during a run gives 143, verdict interrupted, and the reports;
# and the same with jsplan itself as the container's process 1 (the image's
# entrypoint, as `podman run IMAGE apply ...` runs it).
#
# Everything it starts it removes: the containers and the temporary
# directories (on any exit). The image stays in the project's storage.
set -uo pipefail

ref=${1:?usage: test-image.sh REF}
root=$(cd "$(dirname "$0")/../.." && pwd)
img=$root/internal/image/image.sh
task=$root/tekton/task/jsplan/0.1/jsplan.yaml

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jsplan-test-image.XXXXXX")
chmod 755 "$tmp"
names=()
cleanup() {
  local n
  for n in "${names[@]}"; do "$img" podman rm -f -t 0 "$n" >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}

# The step's script, as Tekton writes it to a file (its indentation removed).
awk '/^      script: \|$/ {on=1; next}
     on && /^ {0,7}[^ ]/ {exit}
     on {sub(/^        /, ""); print}' "$task" >"$tmp/script"
chmod 755 "$tmp/script"
if ! head -n 1 "$tmp/script" | grep -q '^#!/usr/bin/env bash'; then
  echo "test-image.sh: no step script found in $task" >&2
  exit 1
fi

# Tekton's entrypoint runs the script in a process group of its own and
# forwards SIGTERM and SIGINT to that group.
cat >"$tmp/entrypoint" <<'EOF'
#!/bin/bash
set -m
"$@" &
pid=$!
trap 'kill -TERM -- -$pid 2>/dev/null' TERM
trap 'kill -INT -- -$pid 2>/dev/null' INT
while :; do
  wait "$pid"
  rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$rc"
EOF
chmod 755 "$tmp/entrypoint"

# The image workspace: an image for the virtual board, with the id it reports.
mkdir -p "$tmp/image" "$tmp/credentials"
imgid=image-test-$$
{ head -c 1048576 /dev/zero; printf '\nJSPLAN_IMAGE_ID=%s\n' "$imgid"; } >"$tmp/image/demo.img"
secret=demo-password
printf 'password: %s\n' "$secret" >"$tmp/credentials/params.yaml"
chmod -R a+rX "$tmp/image" "$tmp/credentials"

run_opts=(--security-opt no-new-privileges)

# taskrun NAME CREDENTIALS PLAN [PARAMS...]: starts the Task's step in a
# detached container NAME with fresh artifacts, scratch and results
# directories; CREDENTIALS true binds the credentials workspace.
taskrun() {
  local name=$1 creds=$2 plan=$3 d=$tmp/$1 ws=()
  shift 3
  mkdir -p "$d/artifacts" "$d/scratch" "$d/results"
  chown 1000:1000 "$d/artifacts" "$d/scratch" "$d/results"
  [ "$creds" = false ] || ws=(-v "$tmp/credentials:/workspace/credentials:ro")
  names+=("$name")
  "$img" run -d --name "$name" "${run_opts[@]}" \
    -v "$root:/workspace/plan:ro" -v "$tmp/image:/workspace/image:ro" \
    -v "$d/artifacts:/workspace/artifacts" "${ws[@]}" \
    -v "$d/scratch:/jsplan-scratch" -v "$d/results:/tekton/results" \
    -v "$tmp/script:/tekton/scripts/apply:ro" -v "$tmp/entrypoint:/tekton/bin/entrypoint:ro" \
    -w /workspace/plan --entrypoint /tekton/bin/entrypoint \
    -e PARAM_PLAN="$plan" -e PARAM_BOARD= -e PARAM_SELECTOR= \
    -e PARAM_LOCK_WAIT=1m -e PARAM_LOCK_DIR=/var/lock/jsplan -e PARAM_RETRY_INFRA=0 \
    -e WS_IMAGE_BOUND=true -e WS_IMAGE_PATH=/workspace/image \
    -e WS_ARTIFACTS_BOUND=true -e WS_ARTIFACTS_PATH=/workspace/artifacts \
    -e WS_BOARDS_BOUND=false -e WS_BOARDS_PATH= \
    -e WS_CREDENTIALS_BOUND="$creds" -e WS_CREDENTIALS_PATH=/workspace/credentials \
    -e SCRATCH_DIR=/jsplan-scratch \
    -e RESULT_VERDICT=/tekton/results/verdict -e RESULT_SUMMARY=/tekton/results/summary \
    "$ref" /tekton/scripts/apply "$@" -- >/dev/null
}

# finish NAME: waits for the container and prints its exit code.
finish() {
  "$img" podman wait "$1" | tail -n 1
}

has_reports() { # has_reports DIR: the three reports a run always leaves
  local f
  for f in console.log report.json junit.xml; do [ -s "$1/$f" ] || return 1; done
}

verdict_is() { [ "$(cat "$tmp/$1/results/verdict" 2>/dev/null)" = "$2" ]; }

t0=$SECONDS
echo "== $ref: user, tools"
id=$("$img" run --rm "${run_opts[@]}" --entrypoint id "$ref" 2>&1)
echo "   id: $id"
check "runs as uid 1000, not root" grep -q '^uid=1000(jsplan) ' <<<"$id"
check "user is in dialout and plugdev (serial, USB)" \
  bash -c 'grep -q "(dialout)" <<<"$1" && grep -q "(plugdev)" <<<"$1"' _ "$id"
out=$("$img" run --rm "${run_opts[@]}" --entrypoint bash "$ref" -c \
  'jsplan --version && ansible-playbook --version | head -n 1 && ssh -V 2>&1 && test -d /run/lock/jsplan -a -w /var/lock/jsplan && echo lockdir-ok' 2>&1)
echo "$out" | sed 's/^/   /'
check "jsplan --version" grep -q '^jsplan version' <<<"$out"
check "ansible-playbook --version" grep -q '^ansible-playbook \[core ' <<<"$out"
check "ssh -V" grep -q '^OpenSSH_' <<<"$out"
check "lock directory /run/lock/jsplan, writable" grep -q '^lockdir-ok' <<<"$out"

echo "== the Task's step: plans/examples/virtual-smoke.yaml on the virtual board"
taskrun smoke true plans/examples/virtual-smoke.yaml image=/workspace/image/demo.img image-id="$imgid"
code=$(finish smoke)
a=$tmp/smoke/artifacts
check "virtual-smoke passes (exit $code)" [ "$code" = 0 ]
check "verdict passed" verdict_is smoke passed
check "console.log, report.json, junit.xml in the artifacts workspace" has_reports "$a"
check "the board reported the flashed image id" grep -rqs "$imgid" "$a/console.log"
check "the credentials' password appears in no artifact" bash -c '! grep -rqs -- "$1" "$2"' _ "$secret" "$a"
[ "$code" = 0 ] || { tail -n 30 "$a/jsplan.log" 2>/dev/null | sed 's/^/   | /'; }

echo "== the Task's step: an invalid plan"
taskrun invalid false tekton/tests/testdata/plans/invalid.yaml
code=$(finish invalid)
check "invalid plan exits 2 (exit $code)" [ "$code" = 2 ]
check "verdict error" verdict_is invalid error
check "the diagnostic names file:line:col and the mistake" \
  grep -qs 'invalid.yaml:[0-9]*:[0-9]*.*nope' "$tmp/invalid/artifacts/jsplan.log"

echo "== the Task's step: SIGTERM to the container during a run"
taskrun hold false tekton/tests/testdata/plans/hold.yaml
for _ in $(seq 600); do
  grep -qs 'holding the board' "$tmp/hold/artifacts/jsplan.log" && break
  [ "$("$img" podman inspect --format '{{.State.Running}}' hold)" = true ] || break
  sleep 0.2
done
"$img" podman kill --signal TERM hold >/dev/null
code=$(finish hold)
a=$tmp/hold/artifacts
check "SIGTERM gives 143 (exit $code)" [ "$code" = 143 ]
check "verdict interrupted" verdict_is hold interrupted
check "reports written after the signal" has_reports "$a"
check "finally ran" grep -qs 'finally ran' "$a/jsplan.log"

echo "== jsplan itself as the container's process 1: SIGTERM during a run"
d=$tmp/pid1
mkdir -p "$d/artifacts" && chown 1000:1000 "$d/artifacts"
names+=(pid1)
"$img" run -d --name pid1 "${run_opts[@]}" -v "$root:/workspace/plan:ro" -v "$d/artifacts:/artifacts" \
  -w /workspace/plan "$ref" apply tekton/tests/testdata/plans/hold.yaml --artifacts /artifacts >/dev/null
for _ in $(seq 600); do
  "$img" podman logs pid1 2>&1 | grep -q 'holding the board' && break
  [ "$("$img" podman inspect --format '{{.State.Running}}' pid1)" = true ] || break
  sleep 0.2
done
"$img" podman kill --signal TERM pid1 >/dev/null
code=$(finish pid1)
check "SIGTERM to jsplan as process 1 gives 143 (exit $code)" [ "$code" = 143 ]
check "reports written after the signal" has_reports "$d/artifacts"

echo "test-image: $((SECONDS - t0))s"
echo "test-image: $passed passed, $failed failed"
[ "$failed" = 0 ]
