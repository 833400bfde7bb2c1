//go:build linux

package sim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The board's shell sees the board's root directory as "/": it runs in a
// user and mount namespace of its own, chrooted there, with the host's
// programs and libraries (/usr, /bin, /lib...) and a few files of /etc
// bound read-only, a handful of device nodes and /proc. So /etc/image-id is
// the board's, /tmp is the board's, and what a plan writes or collects by an
// absolute path stays inside the board. It is a file-system view, not a
// security boundary: the shell runs as the jsplan user (mapped to root
// inside), with that user's rights on what it can reach.
//
// Go cannot run code between fork and exec, so the shell is started as this
// same program (/proc/self/exe) with sandboxEnv set: the init below sets the
// root up and execs /bin/sh before anything else runs.

// simBin holds the board's own commands, first in its PATH.
const simBin = "/opt/sim/bin"

// sandboxEnv carries the board's root directory to the re-executed program,
// shareEnv the host directories shared with the board.
const (
	sandboxEnv  = "JSPLAN_SIM_SANDBOX_ROOT"
	shareEnv    = "JSPLAN_SIM_SANDBOX_SHARE"
	hostnameEnv = "JSPLAN_SIM_SANDBOX_HOSTNAME"
)

func init() {
	root := os.Getenv(sandboxEnv)
	if root == "" {
		return
	}
	var shares []string
	if s := os.Getenv(shareEnv); s != "" {
		shares = filepath.SplitList(s)
	}
	host := os.Getenv(hostnameEnv)
	os.Unsetenv(sandboxEnv)
	os.Unsetenv(shareEnv)
	os.Unsetenv(hostnameEnv)
	if host != "" {
		_ = unix.Sethostname([]byte(host)) // its own UTS namespace
	}
	if err := enterRoot(root, shares...); err != nil {
		fmt.Fprintf(os.Stderr, "sim: cannot set up the board's root file system: %v\r\n", err)
		os.Exit(126)
	}
	err := syscall.Exec("/bin/sh", []string{"/bin/sh", "-i"}, os.Environ())
	fmt.Fprintf(os.Stderr, "sim: cannot start /bin/sh: %v\r\n", err)
	os.Exit(127)
}

// hostDirs are bound read-only into the board (or, when they are symbolic
// links, as on a merged-/usr system, copied as links).
var hostDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// hostEtc are the host's files of /etc programs need (user names, the
// dynamic linker's cache, time zone); the rest of /etc is the board's.
var hostEtc = []string{"passwd", "group", "nsswitch.conf", "ld.so.cache", "localtime"}

// hostDev are the device nodes the board gets.
var hostDev = []string{"null", "zero", "full", "random", "urandom", "tty"}

// enterRoot builds the board's view of the file system under root (in the
// new mount namespace) and makes it the process's root.
func enterRoot(root string, shares ...string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	for _, d := range []string{"etc", "dev", "proc", "tmp", "root", "var/log", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(root, d), 0o1777); err != nil {
			return err
		}
	}
	for _, d := range hostDirs {
		host, in := "/"+d, filepath.Join(root, d)
		fi, err := os.Lstat(host)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if cur, err := os.Readlink(in); err != nil || cur != link {
				_ = os.Remove(in)
				if err := os.Symlink(link, in); err != nil {
					return err
				}
			}
			continue
		}
		if !fi.IsDir() {
			continue
		}
		if err := os.MkdirAll(in, 0o755); err != nil {
			return err
		}
		if err := bindReadOnly(host, in, true); err != nil {
			return err
		}
	}
	for _, f := range hostEtc {
		host, in := "/etc/"+f, filepath.Join(root, "etc", f)
		fi, err := os.Lstat(host)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(host)
			if err == nil {
				_ = os.Remove(in)
				_ = os.Symlink(link, in)
			}
			continue
		}
		if err := touch(in); err != nil {
			return err
		}
		if err := bindReadOnly(host, in, false); err != nil {
			return err
		}
	}
	for _, f := range hostDev {
		in := filepath.Join(root, "dev", f)
		if err := touch(in); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+f, in, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", f, err)
		}
	}
	if err := unix.Mount("/proc", filepath.Join(root, "proc"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /proc: %w", err)
	}
	for _, sh := range shares {
		in := filepath.Join(root, sh)
		if err := os.MkdirAll(in, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(sh, in, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("share %s: %w", sh, err)
		}
	}
	// the board's own commands: dmesg prints its kernel log
	if err := os.MkdirAll(filepath.Join(root, simBin), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, simBin, "dmesg"), []byte("#!/bin/sh\nexec cat /"+kernelLog+"\n"), 0o755); err != nil {
		return err
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// touch creates an empty file at p (a mount point) unless one exists.
func touch(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// bindReadOnly binds src onto dst and makes the binding read-only, keeping
// the flags the original mount is locked with (nosuid, nodev, noexec).
func bindReadOnly(src, dst string, rec bool) error {
	flags := uintptr(unix.MS_BIND)
	if rec {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, dst, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	ro := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			ro |= f.ms
		}
	}
	if err := unix.Mount("", dst, "", ro, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}

// sandboxCommand returns the command that starts the board's shell with root
// as its "/", and whether it can: user namespaces may be off on the host.
func sandboxCommand(root string) (*exec.Cmd, error) {
	if err := sandboxUsable(); err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"sh", "-i"}
	cmd.Dir = root
	return cmd, nil
}

// sandboxAttr adds the namespaces and the identity mapping to attr.
func sandboxAttr(attr *syscall.SysProcAttr) {
	attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	attr.GidMappingsEnableSetgroups = false
}

var (
	probeOnce sync.Once
	probeErr  error
)

// sandboxUsable tells (once per process) whether a user and mount
// namespace can be made here.
func sandboxUsable() error {
	probeOnce.Do(func() {
		if os.Getenv("JSPLAN_SIM_NO_SANDBOX") != "" {
			probeErr = errors.New("JSPLAN_SIM_NO_SANDBOX is set")
			return
		}
		dir, err := os.MkdirTemp("", "jsplan-sim-probe-")
		if err != nil {
			probeErr = err
			return
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = []string{probeEnv + "=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		sandboxAttr(cmd.SysProcAttr)
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("cannot give the shell a root of its own (user and mount namespace): %v %s", err, bytes.TrimSpace(out))
		}
	})
	return probeErr
}

// probeEnv asks the re-executed program to set a root up in the directory
// it names, and exit.
const probeEnv = "JSPLAN_SIM_SANDBOX_PROBE"

func init() {
	if dir := os.Getenv(probeEnv); dir != "" {
		if err := enterRoot(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}
