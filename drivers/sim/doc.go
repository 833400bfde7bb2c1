// Package sim is the built-in virtual board driver, registered as "sim".
//
// A sim board runs inside jsplan and needs no hardware, so every step type
// can be exercised for real. It serves power, console, storage and (when an
// SSH endpoint is configured) network:
//
//   - Power On prints a Linux-like boot log on the console, then a getty-like
//     login prompt. A correct login starts a real /bin/sh -i on its own pty,
//     bridged to the console, in the board's root directory.
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
// The driver is implemented for Linux only; elsewhere it is not registered.
package sim
