#!/usr/bin/env bash
# image.sh: builds, exports and tests jsplan's container images with podman,
# offline, in a storage of the project's own (~/.cache/jsplan/containers): nothing in
# the machine's global container storage, networks or configuration is used
# or changed.
#
#   image.sh bases
#       The local base images the Containerfiles take as build arguments
#       (GO_IMAGE, BASE_IMAGE): Debian root filesystems made with mmdebstrap
#       (minbase, no docs), the build one with this machine's Go toolchain.
#       Made when missing or when their definition here changed; `image.sh
#       clean` drops them.
#   image.sh build [--target STAGE] [--base upstream] CONTAINERFILE REF OUT.oci.tar
#       Builds REF from CONTAINERFILE (at STAGE), with no network, the host's Go
#       module and build caches mounted into the build, every step run afresh
#       (podman's layer cache ignores --timestamp: a cached step would keep the
#       time of the build that made it) into one layer over the base, and
#       exports it as an
#       OCI archive with gzip layers that `skopeo copy oci-archive:OUT ...`
#       pushes as it is. Prints the manifest digest and the sizes.
#       --base upstream builds on the Containerfile's own default bases (they
#       must be in the storage already: nothing is pulled).
#   image.sh test REF
#       Runs REF as the jsplan Task runs it (internal/image/test-image.sh).
#   image.sh podman ARGS...
#       podman on the project's storage, e.g. `image.sh podman images`.
#   image.sh run ARGS...
#       podman run with no network, no pulls and limits this machine grants.
#   image.sh clean
#       Removes the project's container storage.
#
# Environment: SOURCE_DATE_EPOCH (default: the last commit's time) stamps the
# images' files and config; JSPLAN_CACHE (default ~/.cache/jsplan) holds the storage
# (containers/) and the bases' root filesystems while they are made (image/); SUITE
# (default trixie) is the Debian release of the local bases.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${JSPLAN_CACHE:-${HOME:-/tmp}/.cache/jsplan}
store=$cache/containers
work=$cache/image
SUITE=${SUITE:-trixie}

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

# pm runs podman on the project's storage, with the runtime and cgroup manager
# that work on this kind of machine (crun refuses hybrid cgroups here).
PM=(podman --root "$store/root" --runroot "$store/run" --tmpdir "$store/run/libpod"
  --network-config-dir "$store/networks"
  --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend none)

# The one thing podman writes outside that storage as root is the blob-info
# cache of pulls and pushes (/var/lib/containers/cache): remove it again when
# this run made it.
blobcache=/var/lib/containers/cache
if [ ! -e "$blobcache" ]; then
  trap 'rm -rf "$blobcache"; rmdir /var/lib/containers 2>/dev/null || true' EXIT
fi
pm() { TMPDIR=$store/tmp "${PM[@]}" "$@"; }

# Podman's default limits are refused without CAP_SYS_RESOURCE: ask for
# 20000 or this process's hard limit, if lower (more processes than that is
# refused here too).
lim() { local v; v=$(ulimit "$1"); if [ "$v" = unlimited ] || [ "$v" -gt 20000 ]; then v=20000; fi; echo "$v:$v"; }
ULIMITS=(--ulimit "nofile=$(lim -Hn)" --ulimit "nproc=$(lim -Hu)")

gover=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
GO_BASE=localhost/jsplan-local/golang:${gover:-none}-$SUITE
RUN_BASE=localhost/jsplan-local/debian:$SUITE-slim

# The packages the runtime stage installs: the local base has them already,
# so that the build needs no network.
RUN_PKGS=ansible-core,openssh-client,xz-utils,zstd,bzip2,libusb-1.0-0,ca-certificates,curl,git
GO_PKGS=gcc,libc6-dev,make,pkg-config,libusb-1.0-0-dev,ca-certificates

# What debian:*-slim leaves out, left out here too.
LEAN=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# base NAME PACKAGES [HOOK [ENV...]]: a base image from a minbase root
# filesystem, unless the storage has NAME made from the same definition
# already. Its files are stamped with the time of the last change to this
# script (where the bases are defined), not the commit's, so that the
# image's digest comes out the same on another machine; and built without
# podman's layer cache, which ignores --timestamp and would hand back a
# layer stamped with an older time.
base() {
  local name=$1 pkgs=$2 hook=${3:-} dir def epoch
  shift 3 || shift $#
  epoch=$(git -C "$root" log -1 --format=%ct -- internal/image/image.sh 2>/dev/null)
  epoch=${epoch:-$SOURCE_DATE_EPOCH}
  def=$(printf '%s\n' "$SUITE" "$pkgs" "$hook" "$epoch" "${LEAN[@]}" "$@" | sha256sum | cut -c1-16)
  if [ "$(pm image inspect --format '{{index .Labels "jsplan.base"}}' "$name" 2>/dev/null)" = "$def" ]; then
    return
  fi
  dir=$work/${name##*/}
  dir=${dir//:/-}
  rm -rf "$dir" && mkdir -p "$dir"
  echo "image.sh: making $name (mmdebstrap $SUITE, SOURCE_DATE_EPOCH=$epoch)"
  local hooks=()
  [ -z "$hook" ] || hooks=(--customize-hook="$hook")
  SOURCE_DATE_EPOCH=$epoch TMPDIR=$store/tmp nice -n 10 mmdebstrap --quiet --variant=minbase --include="$pkgs" "${LEAN[@]}" \
    "${hooks[@]}" "$SUITE" "$dir/rootfs.tar"
  {
    echo "FROM scratch"
    echo "ADD rootfs.tar /"
    for e in "$@"; do echo "ENV $e"; done
    echo "LABEL jsplan.base=$def"
    echo 'CMD ["/bin/bash"]'
  } >"$dir/Containerfile"
  TMPDIR=$store/tmp nice -n 10 "${PM[@]}" build --quiet --no-cache --pull=never --network none --timestamp "$epoch" \
    -f "$dir/Containerfile" -t "$name" "$dir" >/dev/null
  rm -f "$dir/rootfs.tar"
}

bases() {
  mkdir -p "$store/tmp" "$work"
  local goroot
  goroot=$(go env GOROOT)
  base "$RUN_BASE" "$RUN_PKGS" ""
  # The build base stands in for the golang image: Go in /usr/local/go, the
  # C toolchain for cgo, GOPATH /go.
  base "$GO_BASE" "$GO_PKGS" "cp -a '$goroot' \"\$1/usr/local/go\"" \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPATH=/go GOTOOLCHAIN=local
}

build() {
  local target=() upstream=
  while [ $# -gt 0 ]; do
    case "$1" in
      --target) target=(--target "$2"); shift 2 ;;
      --base) [ "$2" = upstream ] || { echo "image.sh: --base upstream only" >&2; exit 2; }; upstream=1; shift 2 ;;
      *) break ;;
    esac
  done
  [ $# = 3 ] || { echo "usage: image.sh build [--target STAGE] [--base upstream] CONTAINERFILE REF OUT.oci.tar" >&2; exit 2; }
  local file=$1 ref=$2 out=$3
  local args=()
  if [ -z "$upstream" ]; then
    bases
    args+=(--build-arg GO_IMAGE="$GO_BASE" --build-arg BASE_IMAGE="$RUN_BASE")
  fi
  local version=${ref##*:}
  # The build stage downloads nothing: the modules come from the host's cache
  # (filled here through the Go module proxy when cold), and the build cache
  # is shared with the host's so that a warm build compiles only what changed.
  local modcache gocache
  modcache=$(go env GOMODCACHE)
  gocache=$(go env GOCACHE)
  (cd "$root" && go mod download)
  # A Containerfile of a nested module (tekton/dra) builds that module too.
  local mod
  mod=$(dirname "$file")
  if [ "$mod" != . ] && [ -f "$root/$mod/go.mod" ]; then (cd "$root/$mod" && go mod download); fi
  mkdir -p "$gocache" "$store/tmp" "$(dirname "$out")"
  local t0=$SECONDS
  TMPDIR=$store/tmp nice -n 10 "${PM[@]}" build --pull=never --network none --timestamp "$SOURCE_DATE_EPOCH" "${ULIMITS[@]}" \
    --no-cache --layers=false --build-arg VERSION="$version" "${args[@]}" "${target[@]}" \
    -v "$modcache:/go/pkg/mod" -v "$gocache:/root/.cache/go-build" \
    -f "$file" -t "$ref" "$root"
  local built=$((SECONDS - t0))
  pm image prune -f >/dev/null
  rm -f "$out"
  pm push --quiet --format oci --compression-format gzip "$ref" "oci-archive:$out:$ref"
  local digest config size usize
  digest=sha256:$(skopeo inspect --raw "oci-archive:$out" | sha256sum | cut -d' ' -f1)
  size=$(skopeo inspect --raw "oci-archive:$out" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]))')
  usize=$(pm image inspect --format '{{.Size}}' "$ref")
  echo "image:       $ref"
  echo "archive:     $out ($(du -h "$out" | cut -f1))"
  echo "digest:      $digest"
  echo "size:        $((size / 1048576)) MiB compressed layers, $((usize / 1048576)) MiB unpacked"
  echo "built in:    ${built}s (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
  echo "push with:   skopeo copy --preserve-digests oci-archive:$out docker://REGISTRY/${ref#*/}"
  echo "$digest" >"$out.digest"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  bases) bases ;;
  build) build "$@" ;;
  test) "$root/internal/image/test-image.sh" "$@" ;;
  podman) pm "$@" ;;
  run) pm run --pull=never --network none "${ULIMITS[@]}" "$@" ;;
  clean)
    if [ -d "$store" ]; then
      pm rm -a -f >/dev/null 2>&1 || true
      pm rmi -a -f >/dev/null 2>&1 || true
      # overlay mounts podman may hold under the storage
      grep -o " $store/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null || true
      rm -rf "$store" "$work"
    fi
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
