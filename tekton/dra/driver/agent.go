package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/jsplan/jsplan/drivers/remote/agent"
	"github.com/jsplan/jsplan/engine"
)

// Access says how a pod reaches its claimed boards.
type Access string

const (
	// AccessDevices gives the container the boards' device nodes (CDI)
	// and a lock directory of its own; the driver holds the boards' node
	// locks for the claim.
	AccessDevices Access = "devices"
	// AccessAgent gives the container only a unix socket and a lease
	// token per board: an agent in the driver (drivers/remote/agent),
	// serving just the claim's boards, holds their leases (and node locks)
	// and drives the hardware. No device node, no lock directory, no
	// privilege: a DUTLink whose SD mux shows a disk only when switched,
	// or a UART that re-enumerates, is the agent's business. Unprepare
	// ends the leases and the agent powers the boards off (their safe
	// state). The agent lives in the driver: a driver restart ends it,
	// and a run in progress fails as an infrastructure error (exit 3).
	AccessAgent Access = "agent"
)

// ContainerLeaseDir is where an agent-access container finds its claim's
// agent socket (agent.sock) and one token file per board.
const ContainerLeaseDir = "/run/jsplan"

const agentSocket = "agent.sock"

// claimAgent serves one claim's boards to its pod.
type claimAgent struct {
	srv  *agent.Server
	done chan struct{}
}

// leaseDir is the claim's directory the container sees at
// ContainerLeaseDir.
func (d *Driver) leaseDir(uid types.UID) string { return filepath.Join(d.claimDir(uid), "lease") }

// tokenFile names board's token file in the lease directory.
func tokenFile(board string) string { return DeviceName(board) + ".token" }

// startAgent starts the claim's agent over its boards on a socket in its
// lease directory, restricted to the leases granted here, and grants each
// board to the claim, writing the tokens for the pod. A board busy on the
// node (a run by hand holds its lock) fails it; a failure stops the agent.
func (d *Driver) startAgent(ctx context.Context, s *claimState, boards []*engine.BoardSpec, ids podOwner) (err error) {
	d.stopAgent(s.UID)
	dir := d.leaseDir(s.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	srv, err := agent.New(&engine.Inventory{Boards: boards}, agent.Options{
		LockDir:  d.cfg.LockDir,
		StateDir: filepath.Join(d.claimDir(s.UID), "agent-state"),
		Log: func(format string, args ...any) {
			klog.FromContext(ctx).Info(fmt.Sprintf(format, args...), "claim", klog.KRef(s.Namespace, s.Name))
		},
	})
	if err != nil {
		return err
	}
	// Every lease first: a board another driver instance still serves
	// (a rolling update) fails here, before anything of the claim's
	// lease directory is touched.
	holder := fmt.Sprintf("ResourceClaim %s/%s", s.Namespace, s.Name)
	tokens := map[string]string{}
	for _, b := range boards {
		token, err := srv.Grant(ctx, b.Name, holder)
		if err != nil {
			srv.Close()
			return fmt.Errorf("board %s: %w", b.Name, err)
		}
		tokens[b.Name] = token
	}
	sock := filepath.Join(dir, agentSocket)
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		srv.Close()
		return err
	}
	ca := &claimAgent{srv: srv, done: make(chan struct{})}
	go func() {
		defer close(ca.done)
		if err := srv.Serve(ln, agent.Restricted()); err != nil {
			klog.FromContext(ctx).Error(err, "claim agent", "claim", klog.KRef(s.Namespace, s.Name))
		}
	}()
	d.mu.Lock()
	d.agents[s.UID] = ca
	d.mu.Unlock()
	defer func() {
		if err != nil {
			d.stopAgent(s.UID)
		}
	}()
	// The socket is the pod's: the token is what admits a call.
	if err = os.Chmod(sock, ids.socketMode()); err != nil {
		return err
	}
	if err = ids.chown(sock); err != nil {
		return err
	}
	for _, b := range boards {
		p := filepath.Join(dir, tokenFile(b.Name))
		if err = writeFileAtomic(p, []byte(tokens[b.Name]+"\n"), ids.fileMode()); err != nil {
			return err
		}
		if err = ids.chown(p); err != nil {
			return err
		}
	}
	return nil
}

// stopAgent ends a claim's agent: its leases end, the boards are powered
// off and their node locks released.
func (d *Driver) stopAgent(uid types.UID) {
	d.mu.Lock()
	ca := d.agents[uid]
	delete(d.agents, uid)
	d.mu.Unlock()
	if ca == nil {
		return
	}
	_ = ca.srv.Close()
	<-ca.done
}

// agentBoards is the boards of a prepared agent-access claim, from the
// node's inventory (nil and an error when one is gone from it).
func (d *Driver) agentBoards(s *claimState) ([]*engine.BoardSpec, error) {
	d.mu.Lock()
	inv := d.inv
	d.mu.Unlock()
	if inv == nil {
		return nil, errors.New("no inventory loaded")
	}
	var out []*engine.BoardSpec
	for _, pd := range s.Devices {
		if pd.Admin || pd.Resource {
			continue
		}
		b := inv.Lookup(pd.Board)
		if b == nil {
			return nil, fmt.Errorf("board %s is not in the node's inventory any more", pd.Board)
		}
		out = append(out, b)
	}
	return out, nil
}
