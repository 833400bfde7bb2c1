package flash

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr calls ioctl(fd, req, arg) with a pointer argument.
func ioctlPtr(fd int, req uint, arg *[2]uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(arg)))
	if e != 0 {
		return e
	}
	return nil
}

// blkGetSize64 returns the size in bytes of the block device open as fd.
func blkGetSize64(fd int) (uint64, error) {
	var size uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.BLKGETSIZE64), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return 0, e
	}
	return size, nil
}
