package flash

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// target is the file or block device being written.
type target struct {
	path    string // as given
	f       *os.File
	fd      int
	block   bool  // a block device (else a regular file)
	devSize int64 // capacity of a block device
	created bool  // we created the regular file
	dev     uint64
	ino     uint64
}

// openTarget checks that path is something we may write an image to and
// opens it. A missing path becomes a new regular file. Refused: anything
// neither a regular file nor a block device; a block device that (or one of
// whose partitions or holders) is mounted or used as swap; a disk, or a
// partition of a disk, that holds the running system's root file system.
func openTarget(path string) (*target, error) {
	t := &target{path: path}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot create target: %v", ErrRefused, err)
		}
		t.f, t.created = f, true
		return t, t.ident()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: target: %v", ErrRefused, err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot open target: %v", ErrRefused, err)
		}
		t.f = f
		return t, t.ident()
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		// a block device: checked below
	default:
		return nil, fmt.Errorf("%w: target %s is %s, not a regular file or a block device", ErrRefused, path, describeMode(m))
	}

	st := fi.Sys().(*syscall.Stat_t)
	rdev := uint64(st.Rdev)
	if err := checkBlockDevice(path, rdev); err != nil {
		return nil, err
	}
	// O_EXCL on a block device: the kernel refuses (EBUSY) when it is
	// mounted, part of a device-mapper or md device, or used as swap.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%w: block device %s is busy (in use by the kernel: mounted, swap, or part of another device)", ErrRefused, path)
		}
		return nil, fmt.Errorf("%w: cannot open block device %s: %v", ErrRefused, path, err)
	}
	t.f = os.NewFile(uintptr(fd), path)
	t.block = true
	size, err := blkGetSize64(fd)
	if err != nil {
		t.f.Close()
		return nil, fmt.Errorf("%w: cannot read the size of block device %s: %v", ErrRefused, path, err)
	}
	t.devSize = int64(size)
	return t, t.ident()
}

func (t *target) ident() error {
	t.fd = int(t.f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(t.fd, &st); err != nil {
		t.f.Close()
		return fmt.Errorf("target: %v", err)
	}
	t.dev, t.ino = st.Dev, st.Ino
	return nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a " + m.Type().String() + " file"
}

// sysBlock returns the sysfs directory of a block device number.
func sysBlock(dev uint64) (string, error) {
	return filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev)))
}

func readDev(dir string) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return 0, false
	}
	ma, mi, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	x, err1 := strconv.ParseUint(ma, 10, 32)
	y, err2 := strconv.ParseUint(mi, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(x), uint32(y)), true
}

func isPartition(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "partition"))
	return err == nil
}

// diskDir returns the sysfs directory of the whole disk dev belongs to.
func diskDir(dev uint64) (string, error) {
	d, err := sysBlock(dev)
	if err != nil {
		return "", err
	}
	if isPartition(d) {
		return filepath.Dir(d), nil
	}
	return d, nil
}

// family returns the device numbers of everything whose use makes writing
// dev unsafe: the device itself, its partitions when it is a whole disk,
// and, recursively, the devices built on them (holders: dm, md, ...).
func family(dev uint64) map[uint64]string {
	out := map[uint64]string{}
	d, err := sysBlock(dev)
	if err != nil {
		out[dev] = ""
		return out
	}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		n, ok := readDev(dir)
		if !ok || depth > 16 {
			return
		}
		if _, seen := out[n]; seen {
			return
		}
		out[n] = filepath.Base(dir)
		if !isPartition(dir) {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				sub := filepath.Join(dir, e.Name())
				if isPartition(sub) {
					walk(sub, depth+1)
				}
			}
		}
		hs, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range hs {
			if hd, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", h.Name())); err == nil {
				walk(hd, depth+1)
			}
		}
	}
	walk(d, 0)
	out[dev] = filepath.Base(d)
	return out
}

// baseDisks returns the whole disks dev is stored on: its own disk, and for
// stacked devices (dm, md) the disks under their slaves.
func baseDisks(dev uint64) map[uint64]bool {
	out := map[uint64]bool{}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 16 {
			return
		}
		if isPartition(dir) {
			dir = filepath.Dir(dir)
		}
		if n, ok := readDev(dir); ok {
			out[n] = true
		}
		ss, _ := os.ReadDir(filepath.Join(dir, "slaves"))
		for _, s := range ss {
			if sd, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", s.Name())); err == nil {
				walk(sd, depth+1)
			}
		}
	}
	if d, err := sysBlock(dev); err == nil {
		walk(d, 0)
	} else {
		out[dev] = true
	}
	return out
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	dev    uint64
	point  string
	source string
}

func mounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := mount{point: unescapeMount(fields[4])}
		if ma, mi, ok := strings.Cut(fields[2], ":"); ok {
			x, _ := strconv.ParseUint(ma, 10, 32)
			y, _ := strconv.ParseUint(mi, 10, 32)
			m.dev = unix.Mkdev(uint32(x), uint32(y))
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				m.source = unescapeMount(fields[i+2])
				break
			}
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040) of mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountDev returns the block device a mount lives on: its device number, or
// for file systems that report anonymous numbers (btrfs), its source.
func mountDev(m mount) (uint64, bool) {
	if unix.Major(m.dev) != 0 {
		return m.dev, true
	}
	if strings.HasPrefix(m.source, "/dev/") {
		var st unix.Stat_t
		if unix.Stat(m.source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return st.Rdev, true
		}
	}
	return 0, false
}

// rootDisks returns the whole disks holding the running system's root
// file system; empty when root is not on a block device (tmpfs, overlay).
func rootDisks() map[uint64]bool {
	out := map[uint64]bool{}
	ms, _ := mounts()
	for _, m := range ms {
		if m.point != "/" {
			continue
		}
		if d, ok := mountDev(m); ok {
			for k := range baseDisks(d) {
				out[k] = true
			}
		}
	}
	var st unix.Stat_t
	if unix.Stat("/", &st) == nil && unix.Major(st.Dev) != 0 {
		if _, err := sysBlock(st.Dev); err == nil {
			for k := range baseDisks(st.Dev) {
				out[k] = true
			}
		}
	}
	return out
}

// checkBlockDevice refuses a block device that must not be overwritten.
func checkBlockDevice(path string, dev uint64) error {
	roots := rootDisks()
	for d := range baseDisks(dev) {
		if roots[d] {
			return fmt.Errorf("%w: %s is on the disk that holds the running system's root file system", ErrRefused, path)
		}
	}
	fam := family(dev)
	ms, err := mounts()
	if err != nil {
		return fmt.Errorf("%w: cannot read the mount table: %v", ErrRefused, err)
	}
	for _, m := range ms {
		if d, ok := mountDev(m); ok {
			if name, hit := fam[d]; hit {
				return fmt.Errorf("%w: %s is mounted (%s at %s); unmount it first", ErrRefused, path, "/dev/"+name, m.point)
			}
		}
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[1:] {
			fs := strings.Fields(l)
			if len(fs) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(unescapeMount(fs[0]), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
				if name, hit := fam[st.Rdev]; hit {
					return fmt.Errorf("%w: %s is in use as swap (/dev/%s)", ErrRefused, path, name)
				}
			}
		}
	}
	return nil
}
