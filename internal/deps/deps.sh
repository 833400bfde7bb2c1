#!/usr/bin/env bash
# deps.sh: installs the Debian packages jsplan's demo, tests and benchmarks use,
# only those that are missing, package by package, and never a toolchain the
# machine already has (Node.js/npm, Go, Python come from wherever they came from).
#
#   deps.sh check      list what is missing; exit 1 if anything is
#   deps.sh install    install what is missing (root with apt-get), else one clear message
#   deps.sh plan       print the Debian packages 'install' would ask apt for, one a line
#   deps.sh simulate   apt-get install --simulate of every package this script may
#                      install on this machine, whether missing or not: fails where a
#                      fresh machine of this shape would fail to install
set -euo pipefail

# command (or file) that proves a package is there -> the Debian package that provides it.
# A "toolchain" row is installed only when its command is missing entirely: a machine
# that ships its own node/npm/python keeps them.
MAP=(
  "qemu-system-x86_64 qemu-system-x86"
  "busybox busybox-static"
  "syslinux syslinux"
  "/usr/lib/syslinux/mbr/mbr.bin syslinux-common"
  "mcopy mtools"
  "mkfs.vfat dosfstools"
  "sfdisk fdisk"
  "losetup util-linux"
  "openssl openssl"
  "ansible-playbook ansible-core"
  "sshd openssh-server"
  "ssh openssh-client"
  "pre-commit pre-commit"
  "bmaptool bmap-tools"
  "zstd zstd"
  "xz xz-utils"
  "bzip2 bzip2"
  "pkg-config pkg-config"
  "/usr/include/libusb-1.0/libusb.h libusb-1.0-0-dev"
  "socat socat"
  "hyperfine hyperfine"
  "curl curl"
  "tmux tmux"
  "pytest-3 python3-pytest"
  "chromium chromium"
  "podman podman"
  "runc runc"
  "skopeo skopeo"
  "mmdebstrap mmdebstrap"
  "git git"
  "ip iproute2"
  "sysctl procps"
  "unshare util-linux"
)
# toolchains: command -> packages, only when the command is absent
TOOLCHAIN=(
  "node nodejs"
  "npm npm"
)

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

# missing_pkgs prints the packages for the commands that are missing.
missing_pkgs() {
  local row
  for row in "${MAP[@]}" "${TOOLCHAIN[@]}"; do
    set -- $row
    have "$1" || echo "$2"
  done | sort -u
}

# all_pkgs prints every package install may ask for on this machine: all of MAP,
# and a toolchain's packages only where the toolchain is absent.
all_pkgs() {
  local row
  for row in "${MAP[@]}"; do set -- $row; echo "$2"; done
  for row in "${TOOLCHAIN[@]}"; do set -- $row; have "$1" || echo "$2"; done
}

apt_lists_ready() {
  compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null
}

cmd=${1:-check}
case "$cmd" in
  check)
    m=$(missing_pkgs | tr '\n' ' ')
    if [ -n "$m" ]; then echo "jsplan: missing Debian packages: $m"; exit 1; fi
    ;;
  plan)
    missing_pkgs
    ;;
  install)
    m=$(missing_pkgs | tr '\n' ' ')
    [ -z "$m" ] && exit 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      echo "jsplan: missing Debian packages: $m" >&2
      echo "jsplan: install them as root: apt-get install $m" >&2
      exit 1
    fi
    echo "jsplan: installing Debian packages: $m"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $m >/dev/null
    left=$(missing_pkgs | tr '\n' ' ')
    if [ -n "$left" ]; then echo "jsplan: still missing after install: $left" >&2; exit 1; fi
    ;;
  simulate)
    command -v apt-get >/dev/null 2>&1 || { echo "jsplan: no apt-get here" >&2; exit 1; }
    if ! apt_lists_ready; then
      [ "$(id -u)" = 0 ] || { echo "jsplan: apt lists are empty; run apt-get update as root" >&2; exit 1; }
      apt-get update -qq
    fi
    # shellcheck disable=SC2046
    apt-get install --simulate -qq --no-install-recommends $(all_pkgs | sort -u) >/dev/null
    ;;
  *)
    echo "usage: deps.sh check|plan|install|simulate" >&2; exit 2 ;;
esac
