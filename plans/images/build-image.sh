#!/bin/bash
# build-image.sh builds a small bootable raw disk image for the jsplan QEMU
# board from Debian packages, without loop mounts or root-only tricks.
#
# Usage: build-image.sh OUTDIR [--ssh] [--python] [--id ID] [--name NAME]
#
#   OUTDIR    where the image goes (created if missing)
#   --ssh     add an SSH server (dropbear) and virtio-net with the static
#             address 10.0.2.15/24 (QEMU user networking) to the guest
#   --python  also add Python 3 (for ansible modules); implies --ssh
#   --id ID   image id (letters, digits, . _ -); default: a random token
#   --name N  base name of the outputs; default: jsplan-qemu
#
# Environment:
#   IMAGE_PASSWORD         root password in the guest (default: jsplan)
#   IMAGE_AUTHORIZED_KEYS  file of SSH public keys for root (with --ssh)
#   IMAGE_SIZE_MB          disk size in MiB (default: 64)
#   IMAGE_COMPRESS         compressed copies to write: "zst xz" (default), "" for none
#   JSPLAN_CACHE           cache of downloaded .deb files (default: ~/.cache/jsplan)
#   KERNEL_PACKAGE         kernel package to use (default: what the
#                          linux-image-cloud-amd64 meta-package depends on)
#
# Outputs in OUTDIR: NAME.img (raw, sparse), NAME.img.zst and NAME.img.xz (see
# IMAGE_COMPRESS) and NAME.img.bmap when zstd, xz and bmaptool exist, and
# NAME.id (the image id).
# The last two lines on stdout are IMAGE=<path> and IMAGE_ID=<id>.
#
# Host tools: apt-get, dpkg-deb, openssl, sfdisk, mkfs.vfat, mtools, syslinux
# (Debian: busybox-static is downloaded, not needed on the host; packages
# syslinux syslinux-common mtools dosfstools fdisk openssl).
#
# The guest: the Debian cloud kernel plus a busybox initramfs. /init mounts
# proc, sys, devtmpfs and devpts and starts busybox init with a getty on ttyS0
# at 115200; hostname qemu; prompt "root@qemu:~# "; /etc/image-id holds the
# id. The FAT partition holds image-id.txt with the line JSPLAN_IMAGE_ID=<id>,
# stored uncompressed so a tool can find it in the raw image.
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }

outdir=""
ssh=0
python=0
id=""
name=jsplan-qemu
while [ $# -gt 0 ]; do
	case $1 in
	--ssh) ssh=1 ;;
	--python)
		ssh=1
		python=1
		;;
	--id)
		[ $# -ge 2 ] || die "--id needs a value"
		id=$2
		shift
		;;
	--id=*) id=${1#--id=} ;;
	--name)
		[ $# -ge 2 ] || die "--name needs a value"
		name=$2
		shift
		;;
	--name=*) name=${1#--name=} ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	-*) die "unknown option $1 (see --help)" ;;
	*)
		[ -z "$outdir" ] || die "only one OUTDIR is allowed"
		outdir=$1
		;;
	esac
	shift
done
[ -n "$outdir" ] || die "usage: $prog OUTDIR [--ssh] [--python] [--id ID] [--name NAME]"
if [ -z "$id" ]; then
	id=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
fi
[[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "image id must be 1-64 of [A-Za-z0-9._-], got '$id'"
[[ $name =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "name must be 1-64 of [A-Za-z0-9._-], got '$name'"
password=${IMAGE_PASSWORD-jsplan}
[ -n "$password" ] || die "IMAGE_PASSWORD must not be empty"
compress=${IMAGE_COMPRESS-zst xz}
for c in $compress; do
	case $c in
	zst | xz) ;;
	*) die "IMAGE_COMPRESS: unknown format '$c' (zst, xz)" ;;
	esac
done
size_mb=${IMAGE_SIZE_MB:-64}
[[ $size_mb =~ ^[0-9]+$ ]] && [ "$size_mb" -ge 32 ] && [ "$size_mb" -le 4096 ] ||
	die "IMAGE_SIZE_MB must be a number from 32 to 4096, got '$size_mb'"
keys=${IMAGE_AUTHORIZED_KEYS:-}
if [ -n "$keys" ]; then
	[ "$ssh" = 1 ] || die "IMAGE_AUTHORIZED_KEYS needs --ssh"
	[ -r "$keys" ] || die "IMAGE_AUTHORIZED_KEYS: cannot read $keys"
fi

for tool in apt-get dpkg-deb openssl sfdisk mkfs.vfat mcopy syslinux; do
	command -v "$tool" >/dev/null || die "missing host tool $tool (Debian: syslinux syslinux-common mtools dosfstools fdisk openssl)"
done
mbr=""
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/share/syslinux/mbr.bin /usr/lib/SYSLINUX/mbr.bin; do
	if [ -r "$f" ]; then
		mbr=$f
		break
	fi
done
[ -n "$mbr" ] || die "syslinux mbr.bin not found (Debian: syslinux-common)"

cache=${JSPLAN_CACHE:-${HOME:-/tmp}/.cache/jsplan}
debs=$cache/debs
mkdir -p "$debs" "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/jsplan-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One build at a time touches the cache.
if command -v flock >/dev/null; then
	exec 9>"$cache/.lock"
	flock 9
fi

# deb PKG prints the path of PKG's .deb in the cache, downloading it first if
# it is not there. Without network, any cached version of PKG will do.
deb() {
	local pkg=$1 f
	f=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
	if [ -z "$f" ]; then
		log "downloading $pkg"
		(cd "$debs" && apt-get download -q "$pkg" >&2 2>"$work/apt.err") ||
			{ cat "$work/apt.err" >&2; die "apt-get download $pkg failed"; }
		f=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
		[ -n "$f" ] || die "apt-get download $pkg left no ${pkg}_*.deb in $debs"
	fi
	echo "$f"
}

# The kernel: the cloud flavour has the serial console, initrd and devtmpfs
# built in; network and ACPI button drivers are modules.
# The answer of apt-cache (slow) is kept until the apt lists change.
kpkg=${KERNEL_PACKAGE:-}
kfile=$cache/kernel-package
if [ -z "$kpkg" ] && [ -s "$kfile" ] &&
	[ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$kfile" -print -quit 2>/dev/null)" ]; then
	kpkg=$(cat "$kfile")
fi
if [ -z "$kpkg" ]; then
	kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1) || true
	if [ -n "$kpkg" ]; then
		echo "$kpkg" >"$kfile"
	fi
fi
kdeb=""
if [ -n "$kpkg" ] && ! kdeb=$(deb "$kpkg"); then
	kdeb=""
fi
if [ -z "$kdeb" ]; then
	# No apt metadata or no network: fall back to a cached cloud kernel.
	kdeb=$(find "$debs" -maxdepth 1 -name 'linux-image-*-cloud-amd64_*.deb' | sort -V | tail -n 1)
	[ -n "$kdeb" ] || die "cannot get the cloud kernel package ${kpkg:-(apt-cache depends linux-image-cloud-amd64 found none)}; set KERNEL_PACKAGE"
	log "warning: using the cached kernel $(basename "$kdeb")"
fi
kdir=$cache/kernel/$(basename "$kdeb" .deb)
if [ ! -e "$kdir/.done" ]; then
	log "extracting $(basename "$kdeb")"
	rm -rf "$kdir"
	mkdir -p "$kdir"
	dpkg-deb -x "$kdeb" "$kdir/root"
	# Keep the kernel and the few modules the image may load.
	mkdir -p "$kdir/modules"
	cp "$kdir"/root/boot/vmlinuz-* "$kdir/vmlinuz"
	find "$kdir/root/lib/modules" -name '*.ko*' \( -path '*/drivers/virtio/*' -o -path '*/drivers/net/*' \
		-o -path '*/net/core/*' -o -path '*/drivers/input/*' -o -path '*/drivers/acpi/*' -o -path '*/char/hw_random/*' \) \
		-exec cp {} "$kdir/modules/" \;
	rm -rf "$kdir/root"
	touch "$kdir/.done"
fi

# Modules in load order: each after the modules it depends on.
declare -A seen=()
order=()
add_module() {
	local m=$1 f d
	[ -z "${seen[$m]:-}" ] || return 0
	seen[$m]=1
	f=$kdir/modules/$m.ko
	[ -e "$f" ] || die "kernel module $m not found in $(basename "$kdeb")"
	for d in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$d"
	done
	order+=("$m")
}
modules=(button evdev)
if [ "$ssh" = 1 ]; then
	modules+=(virtio_pci virtio_net)
fi
for m in "${modules[@]}"; do
	add_module "$m"
done

# Busybox (static) from its Debian package; it also runs on the host to write
# the cpio archive, so the host needs no cpio.
bbdir=$work/busybox
mkdir -p "$bbdir"
bbdeb=$(deb busybox-static)
dpkg-deb -x "$bbdeb" "$bbdir"
bb=$bbdir/bin/busybox
[ -x "$bb" ] || die "busybox-static package has no bin/busybox"

# The root file system of the initramfs.
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/acpi/PWRF,proc,sys,dev,run,tmp,root,var/log,lib/modules}
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
for m in "${order[@]}"; do
	cp "$kdir/modules/$m.ko" "$root/lib/modules/"
	echo "$m" >>"$root/etc/modules"
done

hash=$(printf '%s\n' "$password" | openssl passwd -6 -stdin)
echo qemu >"$root/etc/hostname"
echo "$id" >"$root/etc/image-id"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
printf 'root:%s:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' "$hash" >"$root/etc/shadow"
chmod 600 "$root/etc/shadow"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo /bin/sh >"$root/etc/shells"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tqemu\n' >"$root/etc/hosts"
# On the serial console the shell reads plain lines: with line editing busybox
# ash sends a cursor position query (ESC [6n) after each prompt, which lands
# in the console log and breaks prompt matching. Without the terminal's echo
# the shell echoes each line itself (set -v), so the log still shows commands.
cat >"$root/etc/profile" <<'EOF'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\u@\h:\w\$ '
case $(tty) in
/dev/ttyS*) stty -echo && set -v ;;
esac
EOF

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mkdir -p /dev/pts
/bin/busybox mount -t devpts -o gid=5,mode=620 devpts /dev/pts
/bin/busybox hostname -F /etc/hostname
echo "jsplan test image $(cat /etc/image-id)"
exec /sbin/init
EOF
chmod 755 "$root/init"

cat >"$root/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
EOF

cat >"$root/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# Load the modules listed in /etc/modules, in order.
while read -r m; do
	insmod "/lib/modules/$m.ko" 2>/dev/null
done </etc/modules
# The ACPI power button (QMP system_powerdown) powers the guest off.
acpid
ip link set lo up
if [ -x /usr/sbin/dropbear ]; then
	# QEMU user networking: the guest is 10.0.2.15, the host 10.0.2.2.
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -e /sys/class/net/eth0 ] && break
		sleep 0.2
	done
	if [ -e /sys/class/net/eth0 ]; then
		ip link set eth0 up
		ip addr add 10.0.2.15/24 dev eth0
		ip route add default via 10.0.2.2
	fi
	mkdir -p /etc/dropbear
	dropbear -R -p 22
fi
EOF
chmod 755 "$root/etc/init.d/rcS"
# busybox acpid runs /etc/acpi/PWRF/00000080 on a power button press.
printf '#!/bin/sh\nexec poweroff\n' >"$root/etc/acpi/PWRF/00000080"
chmod 755 "$root/etc/acpi/PWRF/00000080"

# unpack DIR PKG... extracts the packages into the cache directory DIR (kept
# per set of package versions) and prints its path.
unpack() {
	local name=$1 f dir p
	shift
	local files=()
	for p in "$@"; do
		f=$(deb "$p")
		files+=("$f")
	done
	dir=$cache/unpacked/$name-$(printf '%s\n' "${files[@]##*/}" | md5sum | cut -c1-16)
	if [ ! -e "$dir/.done" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		for f in "${files[@]}"; do
			dpkg-deb -x "$f" "$dir"
		done
		touch "$dir/.done"
	fi
	echo "$dir"
}

# add_libs FROM REQUIRED FILE... copies into the image the shared libraries
# the ELF files need, found in the unpacked packages FROM. With REQUIRED=1 a
# missing library is an error; otherwise the file is removed from the image.
add_libs() {
	local from=$1 required=$2 f line lib path
	shift 2
	local ldso=$from/lib64/ld-linux-x86-64.so.2
	local lp=$from/lib/x86_64-linux-gnu:$from/usr/lib/x86_64-linux-gnu
	mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu"
	[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L "$ldso" "$root/lib64/"
	for f in "$@"; do
		# ld.so also searches the host's directories: a library found there
		# counts as missing.
		if ! LD_LIBRARY_PATH=$lp "$ldso" --list "$f" >"$work/ldd" 2>&1 ||
			grep -q 'not found' "$work/ldd" || grep -v "=> $from/" "$work/ldd" | grep -q '=> /'; then
			if [ "$required" = 1 ]; then
				cat "$work/ldd" >&2
				die "${f#"$root"}: a shared library is missing from the downloaded packages"
			fi
			rm -f "$f"
			continue
		fi
		while read -r line; do
			case $line in
			/*) ;; # the loader itself
			*" => /"*)
				lib=${line%% =>*}
				path=${line#*=> }
				path=${path% (*}
				[ -e "$root/lib/x86_64-linux-gnu/$lib" ] || cp -L "$path" "$root/lib/x86_64-linux-gnu/$lib"
				;;
			esac
		done <"$work/ldd"
	done
}

if [ "$ssh" = 1 ]; then
	# dropbear from Debian with its shared libraries (no static build exists).
	libs=$(unpack dropbear dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g)
	install -m 755 "$libs/usr/sbin/dropbear" "$root/usr/sbin/dropbear"
	add_libs "$libs" 1 "$root/usr/sbin/dropbear"
	mkdir -p "$root/root/.ssh"
	chmod 700 "$root/root/.ssh"
	if [ -n "$keys" ]; then
		cp "$keys" "$root/root/.ssh/authorized_keys"
		chmod 600 "$root/root/.ssh/authorized_keys"
	fi
fi

if [ "$python" = 1 ]; then
	# Python for ansible modules: the interpreter and its standard library,
	# without the parts a test board has no use for. Extension modules whose
	# libraries are not in the image are left out (_ssl, _hashlib: hashlib
	# falls back to its built-in hashes without OpenSSL).
	py=$(unpack python python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
		libc6 libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libcrypt1 libuuid1)
	install -m 755 "$py/usr/bin/python3.11" "$root/usr/bin/python3.11"
	ln -s python3.11 "$root/usr/bin/python3"
	mkdir -p "$root/usr/lib"
	cp -a "$py/usr/lib/python3.11" "$root/usr/lib/"
	(cd "$root/usr/lib/python3.11" && rm -rf ensurepip idlelib lib2to3 pydoc_data tkinter turtle.py turtledemo \
		test config-3.11-x86_64-linux-gnu distutils/command/*.exe site-packages \
		lib-dynload/_test* lib-dynload/_ctypes_test* lib-dynload/xxlimited* lib-dynload/_xx*)
	find "$root/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
	add_libs "$py" 1 "$root/usr/bin/python3.11"
	add_libs "$py" 0 "$root"/usr/lib/python3.11/lib-dynload/*.so
	echo 'export PYTHONDONTWRITEBYTECODE=1' >>"$root/etc/profile"
fi

(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc -R 0:0 --renumber-inodes --ignore-devno 2>/dev/null) |
	gzip -n >"$work/initrd.gz"

cat >"$work/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 quiet
EOF
printf 'JSPLAN_IMAGE_ID=%s\n' "$id" >"$work/image-id.txt"

# The disk: one FAT16 partition from 1 MiB, syslinux in it and in the MBR.
img=$work/disk.img
truncate -s "${size_mb}M" "$img"
printf 'label: dos\nstart=2048, type=6, bootable\n' | sfdisk -q "$img" >/dev/null
mkfs.vfat -F 16 -n JSPLAN --offset 2048 "$img" $(((size_mb - 1) * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
part="$img@@1M"
mcopy -i "$part" "$kdir/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$work/initrd.gz" ::/initrd.gz
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$part" "$work/image-id.txt" ::/image-id.txt
syslinux --offset 1048576 --install "$img"
dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc status=none
grep -qa "JSPLAN_IMAGE_ID=$id" "$img" || die "the image id is not readable in the raw image"

out=$outdir/$name.img
rm -f "$out" "$out.zst" "$out.xz" "$out.bmap"
mv "$img" "$out"
echo "$id" >"$outdir/$name.id"
if command -v bmaptool >/dev/null; then
	bmaptool -q create -o "$out.bmap" "$out" || log "warning: bmaptool create failed"
fi
for c in $compress; do
	case $c in
	zst) if command -v zstd >/dev/null; then zstd -q -T0 -f "$out" -o "$out.zst"; fi ;;
	xz) if command -v xz >/dev/null; then xz -T0 -0 -k -f "$out"; fi ;;
	esac
done
echo "IMAGE=$out"
echo "IMAGE_ID=$id"
