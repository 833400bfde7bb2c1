#!/usr/bin/env bash
# flash-bench.sh: time jsplan's flash pipeline (internal/flash) against the
# usual tools, every run ending durable (fsync), and print a table of the
# best-of-N wall times and their ratios (baseline / jsplan: >1 means jsplan
# is faster).
#
# Images (made in a temp dir, or reused from $BENCH_DIR when it has them):
#   raw.img       1 GiB of random data
#   sparse.img    2 GiB sparse image, ~10% data (shared-library bytes in
#                 extents of 4 KiB..16 MiB at random places), its bmaptool
#                 bmap, and sparse.img.zst (zstd -T0), sparse.img.xz (xz -T0)
#
# Environment: BENCH_DIR (images; kept), TARGET_DIR (where targets are
# written; default: the image dir), RUNS (default 3), RAW_SIZE and
# SPARSE_SIZE (bytes; default 1 GiB and 2 GiB: a test runs the script once
# on a few MiB).
# Needs: go, bmaptool (bmap-tools), zstd, xz (xz-utils), python3, dd.
set -euo pipefail

RUNS=${RUNS:-3}
RAW_SIZE=${RAW_SIZE:-$((1 << 30))}
SPARSE_SIZE=${SPARSE_SIZE:-$((2 << 30))}
human() { awk -v b="$1" 'BEGIN { if (b >= 2^30) printf "%g GiB", b/2^30; else printf "%g MiB", b/2^20 }'; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for tool in go bmaptool zstd xz python3 dd cmp; do
	command -v "$tool" >/dev/null || { echo "flash-bench: $tool is missing" >&2; exit 2; }
done

if [[ -n ${BENCH_DIR:-} ]]; then
	work=$BENCH_DIR
	mkdir -p "$work"
else
	work=$(mktemp -d /tmp/flash-bench.XXXXXX)
	trap 'rm -rf "$work"' EXIT
fi
tdir=${TARGET_DIR:-$work}
target=$tdir/target.img

echo "== building flashcmd" >&2
(cd "$root" && go build -o "$work/flashcmd" ./internal/bench/flashcmd)
flash=$work/flashcmd

mk() { [[ -s $1 ]] && echo "== reusing $1" >&2 && return 1; echo "== making $1" >&2; return 0; }

if mk "$work/raw.img"; then
	head -c "$RAW_SIZE" /dev/urandom >"$work/raw.img.tmp" && mv "$work/raw.img.tmp" "$work/raw.img"
fi
if mk "$work/sparse.img"; then
	# Data: bytes of the system's shared libraries (compress like a real
	# root file system does), in extents at random places.
	find /usr/lib -type f -name '*.so*' -size +64k 2>/dev/null | sort | head -2000 |
		xargs cat 2>/dev/null | head -c $((SPARSE_SIZE / 8)) >"$work/pool.bin" || true
	python3 - "$work/sparse.img.tmp" "$SPARSE_SIZE" 0.10 "$work/pool.bin" <<'PY'
import os, random, sys
path, size, frac, pool = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rng = random.Random(42)
pdata = open(pool, 'rb').read()
if len(pdata) < min(64 << 20, size // 4):
    pdata += os.urandom(min(64 << 20, size // 4) - len(pdata))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, size)
want, done = int(size * frac), 0
os.pwrite(fd, pdata[:1 << 20], 0)          # partition table, boot area
done += 1 << 20
while done < want:
    n = max(4096, int(2 ** rng.uniform(12, 24)) // 4096 * 4096)
    n = min(n, want - done + 4096, len(pdata) - 4096, size // 2)
    off = rng.randrange(0, (size - n) // 4096) * 4096
    src = rng.randrange(0, len(pdata) - n)
    os.pwrite(fd, pdata[src:src + n], off)
    done += n
os.close(fd)
PY
	rm -f "$work/pool.bin"
	mv "$work/sparse.img.tmp" "$work/sparse.img"
fi
if mk "$work/sparse.img.bmap"; then
	bmaptool create "$work/sparse.img" -o "$work/sparse.img.bmap"
fi
if mk "$work/sparse.img.zst"; then
	zstd -q -T0 -f "$work/sparse.img" -o "$work/sparse.img.zst"
fi
if mk "$work/sparse.img.xz"; then
	xz -T0 -k -f -c "$work/sparse.img" >"$work/sparse.img.xz.tmp" && mv "$work/sparse.img.xz.tmp" "$work/sparse.img.xz"
fi
bmap=$work/sparse.img.bmap

# best CMD...: the lowest wall time of RUNS runs, the target removed before
# each run.
timeit() {
	local t0 t1
	rm -f "$target"
	sync
	t0=$(date +%s%N)
	"$@" >/dev/null 2>"$work/err" || { echo "flash-bench: failed: $*" >&2; cat "$work/err" >&2; exit 1; }
	t1=$(date +%s%N)
	echo $(( (t1 - t0) / 1000000 ))
}

printf '\n%-26s %-34s %10s %10s %8s\n' "case" "baseline" "base s" "jsplan s" "ratio"
printf '%-26s %-34s %10s %10s %8s\n' "----" "--------" "------" "--------" "-----"

# row NAME BASELINE-LABEL REFERENCE-FILE 'baseline command' jsplan-args...
row() {
	local name=$1 label=$2 ref=$3 base=$4
	shift 4
	local bbest=999999999 jbest=999999999 b j i
	for ((i = 0; i < RUNS; i++)); do
		# Alternate, so load from other users hits both alike.
		b=$(timeit bash -c "$base")
		((b < bbest)) && bbest=$b
		j=$(timeit "$flash" -q "$@" "$target")
		((j < jbest)) && jbest=$j
	done
	# Check jsplan's result once (not timed).
	if ! cmp -s "$ref" "$target"; then
		echo "flash-bench: jsplan's output differs from $ref ($name)" >&2
		exit 1
	fi
	awk -v n="$name" -v l="$label" -v b="$bbest" -v j="$jbest" \
		'BEGIN { printf "%-26s %-34s %10.2f %10.2f %7.2fx\n", n, l, b/1000, j/1000, b/j }'
}

dd_to="of='$target' bs=4M conv=fsync status=none"
row "raw $(human "$RAW_SIZE")" "dd bs=4M conv=fsync" "$work/raw.img" \
	"dd if='$work/raw.img' $dd_to" "$work/raw.img"
row "sparse $(human "$SPARSE_SIZE") + bmap" "bmaptool copy" "$work/sparse.img" \
	"bmaptool -q copy --bmap '$bmap' '$work/sparse.img' '$target'" -bmap "$bmap" "$work/sparse.img"
row "sparse .zst + bmap" "bmaptool copy" "$work/sparse.img" \
	"bmaptool -q copy --bmap '$bmap' '$work/sparse.img.zst' '$target'" -bmap "$bmap" "$work/sparse.img.zst"
row "sparse .xz + bmap" "bmaptool copy" "$work/sparse.img" \
	"bmaptool -q copy --bmap '$bmap' '$work/sparse.img.xz' '$target'" -bmap "$bmap" "$work/sparse.img.xz"
row "sparse .zst, no bmap" "zstd -dc | dd bs=4M conv=fsync" "$work/sparse.img" \
	"zstd -dc '$work/sparse.img.zst' | dd $dd_to" -no-bmap "$work/sparse.img.zst"
row "sparse .xz, no bmap" "xz -dc | dd bs=4M conv=fsync" "$work/sparse.img" \
	"xz -dc '$work/sparse.img.xz' | dd $dd_to" -no-bmap "$work/sparse.img.xz"
row "sparse .xz, no bmap" "xz -T0 -dc | dd bs=4M conv=fsync" "$work/sparse.img" \
	"xz -T0 -dc '$work/sparse.img.xz' | dd $dd_to" -no-bmap "$work/sparse.img.xz"
rm -f "$target"
echo
echo "best of $RUNS runs each; images in the page cache; targets on $(df --output=source,fstype "$tdir" | tail -1 | tr -s ' '); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
