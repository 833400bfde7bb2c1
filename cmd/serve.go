package cmd

// jsplan serve: the agent that serves an inventory's boards to the remote
// driver; jsplan ca: the certificates of a small lab for its TCP listeners.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/drivers/remote/agent"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/pki"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve an inventory's boards to remote clients (the `remote` driver), under expiring leases",
		Description: "Boards are used under leases: a client queues (priority, then arrival), holds the board's\n" +
			"lock through the agent while it keeps the lease alive, and loses it after --lease-ttl\n" +
			"without a keepalive: the board is then powered off and goes to the next in line.\n" +
			"A unix: socket is guarded by its file permissions (--socket-mode) and a per-lease token;\n" +
			"tcp: needs mutual TLS (--tls-ca, --tls-cert, --tls-key; `jsplan ca` makes them).\n\n" +
			"Exit status: 0 stopped by SIGINT/SIGTERM, 2 usage or invalid inventory, 3 cannot listen.",
		Flags: []cli.Flag{
			boardsFlag, lockDirFlag, stateDirFlag,
			&cli.StringSliceFlag{Name: "listen", Usage: "`ADDR`: unix:PATH or tcp:HOST:PORT (repeatable)", EnvVars: []string{"JSPLAN_LISTEN"}, Required: true},
			&cli.DurationFlag{Name: "lease-ttl", Value: 30 * time.Second, Usage: "a lease without a keepalive for this long ends", EnvVars: []string{"JSPLAN_LEASE_TTL"}},
			&cli.StringFlag{Name: "socket-mode", Value: "0660", Usage: "file mode of unix sockets (who may connect)", EnvVars: []string{"JSPLAN_SOCKET_MODE"}},
			&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate `FILE` client certificates must chain to", EnvVars: []string{"JSPLAN_TLS_CA"}},
			&cli.StringFlag{Name: "tls-cert", Usage: "the agent's certificate `FILE`", EnvVars: []string{"JSPLAN_TLS_CERT"}},
			&cli.StringFlag{Name: "tls-key", Usage: "the agent's key `FILE`", EnvVars: []string{"JSPLAN_TLS_KEY"}},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return exit(2, "serve takes no arguments\nRun 'jsplan serve --help' for usage.")
			}
			inv, err := validInventory(c)
			if err != nil {
				return err
			}
			mode, err := strconv.ParseUint(c.String("socket-mode"), 8, 32)
			if err != nil || mode > 0o777 {
				return exit(2, "--socket-mode %q is not an octal file mode", c.String("socket-mode"))
			}
			if c.Duration("lease-ttl") < 10*time.Millisecond {
				return exit(2, "--lease-ttl %s is too short", c.Duration("lease-ttl"))
			}
			opts := agent.Options{LockDir: lockDirOf(c), StateDir: stateDirOf(c), TTL: c.Duration("lease-ttl"),
				Log: func(format string, args ...any) {
					fmt.Fprintf(c.App.ErrWriter, "%s %s\n", time.Now().Format("15:04:05"), printable(fmt.Sprintf(format, args...)))
				}}
			var listeners []net.Listener
			closeAll := func() {
				for _, ln := range listeners {
					ln.Close()
				}
			}
			for _, addr := range c.StringSlice("listen") {
				network, target, err := remotepb.ParseAddress(addr)
				if err != nil {
					closeAll()
					return exit(2, "--listen: %v", err)
				}
				if network == "tcp" && opts.TLS == nil {
					tc, err := pki.ServerConfig(pki.Files{CA: c.String("tls-ca"), Cert: c.String("tls-cert"), Key: c.String("tls-key")})
					if err != nil {
						closeAll()
						return exit(2, "--listen %s: %v", addr, err)
					}
					opts.TLS = tc
				}
				ln, err := listen(network, target, os.FileMode(mode))
				if err != nil {
					closeAll()
					return exit(3, "--listen %s: %v", addr, err)
				}
				listeners = append(listeners, ln)
			}
			srv, err := agent.New(inv, opts)
			if err != nil {
				closeAll()
				return exit(3, "%v", err)
			}
			ctx, stop := signalContext()
			defer stop()
			var wg sync.WaitGroup
			errc := make(chan error, len(listeners))
			for _, ln := range listeners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := srv.Serve(ln); err != nil {
						errc <- err
					}
				}()
				fmt.Fprintf(c.App.ErrWriter, "jsplan serve: %d boards (%s) on %s, leases end %s after the last keepalive\n",
					len(inv.Boards), strings.Join(inv.Names(), ", "), ln.Addr(), opts.TTL)
			}
			select {
			case <-ctx.Done():
			case err = <-errc:
			}
			srv.Close()
			wg.Wait()
			for _, ln := range listeners {
				if u, ok := ln.Addr().(*net.UnixAddr); ok {
					os.Remove(u.Name)
				}
			}
			if err != nil {
				return exit(3, "serve: %v", err)
			}
			return nil
		},
	}
}

// listen opens a listener; a unix socket gets mode, and a stale socket
// file (nobody listening) is replaced.
func listen(network, target string, mode os.FileMode) (net.Listener, error) {
	if network != "unix" {
		return net.Listen(network, target)
	}
	if fi, err := os.Lstat(target); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", target)
		}
		if c, err := net.DialTimeout("unix", target, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another agent listens there", target)
		}
		os.Remove(target)
	}
	// created with no permission for anyone, then opened up to mode: no
	// moment in which the umask's wider mode lets others connect
	old := umask(0o777)
	ln, err := net.Listen("unix", target)
	umask(old)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(target, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func caCommand() *cli.Command {
	valid := &cli.DurationFlag{Name: "valid", Value: 365 * 24 * time.Hour, Usage: "validity of the certificate"}
	return &cli.Command{
		Name:  "ca",
		Usage: "make a small lab's CA and its agents' and clients' certificates (mutual TLS for jsplan serve)",
		Description: "jsplan ca init DIR                      a new CA: DIR/ca.crt, DIR/ca.key (keep ca.key offline)\n" +
			"jsplan ca issue DIR NAME --server --host lab1.example.org --host 10.0.0.5\n" +
			"jsplan ca issue DIR alice               a client certificate: DIR/alice.crt, DIR/alice.key\n\n" +
			"The agent shows a client certificate's name as the holder of its leases.",
		Subcommands: []*cli.Command{
			{
				Name: "init", Usage: "make a CA in DIR", ArgsUsage: "DIR",
				Flags: []cli.Flag{&cli.StringFlag{Name: "name", Value: "jsplan lab CA", Usage: "the CA's common name"},
					&cli.DurationFlag{Name: "valid", Value: 10 * 365 * 24 * time.Hour, Usage: "validity of the CA"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return exit(2, "ca init needs DIR\nRun 'jsplan ca init --help' for usage.")
					}
					f, err := pki.NewCA(c.Args().First(), c.String("name"), c.Duration("valid"))
					if err != nil {
						return exit(3, "%v", err)
					}
					fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", f.CA, f.Key)
					return nil
				},
			},
			{
				Name: "issue", Usage: "issue a certificate with the CA in DIR", ArgsUsage: "DIR NAME",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "server", Usage: "an agent's certificate (default: a client's)"},
					&cli.StringSliceFlag{Name: "host", Usage: "a DNS name or IP address the agent is reached by (repeatable)"}, valid},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return exit(2, "ca issue needs DIR and NAME\nRun 'jsplan ca issue --help' for usage.")
					}
					kind := pki.Client
					if c.Bool("server") {
						kind = pki.Server
					}
					f, err := pki.Issue(c.Args().Get(0), c.Args().Get(1), kind, c.StringSlice("host"), c.Duration("valid"))
					if err != nil {
						var pe *os.PathError
						if errors.As(err, &pe) || errors.Is(err, pki.ErrBadName) {
							return exit(2, "%v", err)
						}
						return exit(3, "%v", err)
					}
					fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", f.Cert, f.Key)
					return nil
				},
			},
		},
	}
}

func umask(m int) int { return syscall.Umask(m) }
