// Package sim is the built-in virtual board driver, registered as "sim".
//
// A sim board runs inside jsplan and needs no hardware, so every step type
// can be exercised for real. It serves power, console, storage and (when an
// SSH endpoint is configured) network:
//
//   - Power On prints a Linux-like boot log on the console, then a getty-like
//     login prompt. A correct login starts a real /bin/sh -i on its own pty,
//     bridged to the console, whose "/" is the board's root directory.
//   - The console is a real pseudo-terminal. The board owns the master side;
//     OpenConsole returns the slave side in raw mode, so the host sees exactly
//     the bytes the board sends, as from a UART. It stays open across power
//     cycles.
//   - Storage is the file disk.img in the board's state directory. The image
//     id printed during boot (and written to /etc/image-id under the board's
//     root directory) is the token after JSPLAN_IMAGE_ID= in the first 64 MiB
//     of the disk, or else a short sha256 of the disk.
//   - Faults (a boot hang, a kernel panic, refused logins, a failing power
//     switch, a console that dies) can be switched on in the configuration.
//
// A board entry in a Boards inventory:
//
//	boards:
//	- name: sim-1
//	  labels: {arch: x86_64, virtual: "true"}
//	  vars: {image-id-file: etc/image-id}   # relative to the shell's directory, its /
//	  drivers:
//	    sim:
//	      hostname: sim                    # default
//	      boot-delay: 20ms                 # default
//	      ssh: {host: 127.0.0.1, port: 2222, key-file: keys/id_ed25519}
//	      faults: {console-drop-after: 30s}
//
// The shell is a real process on the host, run as the jsplan user (root
// inside a user namespace of its own) and chrooted in a mount namespace to
// the board's root directory, its working directory and HOME: /etc, /tmp,
// /var/log are the board's, the host's /usr, /bin, /lib and a few files of
// /etc are bound read-only, /dev has null, zero, random, urandom and tty,
// /proc is the host's, the host name is the board's (a UTS namespace), and
// dmesg prints the board's boot log (see
// sandbox.go). Where user namespaces are off (or JSPLAN_SIM_NO_SANDBOX is
// set) the shell runs in the host's file system, and the log says so. It is
// a file-system view for honest tests, not a security boundary.
//
// The driver is implemented for Linux only; elsewhere it is not registered.
package sim
