#!/usr/bin/env bash
# Times `jsplan validate` against ajv-cli (same schema, same 500 plans, whole
# process) and prints the ratio. Run by `make bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
JSPLAN=${JSPLAN:-bin/jsplan}
AJV=${AJV:-${JSPLAN_CACHE:-$HOME/.cache/jsplan}/npm/node_modules/.bin/ajv}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 "$N"); do
cat > "$dir/plan-$i.yaml" <<YAML
apiVersion: jsplan.dev/v1
kind: Plan
name: plan-$i
params:
  image: {type: string, default: image-$i.img}
  password: {type: string, secret: true, default: bench-password}
board: {labels: {kind: virtual}}
timeout: 30m
fail-on: ["Kernel panic"]
steps:
  - power: off
  - flash: {image: "\${{ params.image }}", verify: true}
  - power: on
  - wait-for-login: {username: root, password: "\${{ params.password }}"}
  - run: {command: "uname -a", expect-output: "Linux"}
  - console: {send: "<ENTER>", expect: ["# \$", "login:"]}
  - collect: {paths: [/var/log/messages], to: logs}
    timeout: 2m
    retry: {attempts: 2, delay: 5s}
finally:
  - power: off
YAML
done
"$JSPLAN" schema > "$dir/schema.json"
now() { date +%s%N; }
t0=$(now); "$JSPLAN" validate -q "$dir"; t1=$(now)
js=$(( (t1 - t0) / 1000000 ))
if [[ ! -x $AJV ]]; then
	echo "validate $N plans: jsplan ${js} ms (ajv-cli not found at $AJV: make deps-npm)"
	exit 0
fi
t0=$(now); "$AJV" validate --spec=draft2020 --strict=false -s "$dir/schema.json" -d "$dir/plan-*.yaml" >/dev/null; t1=$(now)
aj=$(( (t1 - t0) / 1000000 ))
echo "validate $N plans: jsplan ${js} ms, ajv-cli ${aj} ms, ratio $(awk "BEGIN{printf \"%.1f\", $aj/($js>0?$js:1)}")x"
