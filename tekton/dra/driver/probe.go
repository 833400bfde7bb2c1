package driver

import (
	"context"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Sockets are the two sockets a running driver serves: the kubelet's
// registration socket and the DRA socket it prepares claims through.
type Sockets struct {
	Registration, DRA string
}

// SocketPaths is where a driver started with these directories serves its
// sockets; podUID is the pod UID given to kubeletplugin.RollingUpdate ("":
// no rolling update), which makes both names unique to the pod.
func SocketPaths(driverName, registryDir, pluginDir string, podUID types.UID) Sockets {
	if podUID == "" {
		return Sockets{Registration: filepath.Join(registryDir, driverName+"-reg.sock"), DRA: filepath.Join(pluginDir, "dra.sock")}
	}
	return Sockets{
		Registration: filepath.Join(registryDir, kubeletplugin.RollingUpdateRegistrarSocketFile(registryDir, driverName, podUID)),
		DRA:          filepath.Join(pluginDir, "dra-"+string(podUID)+".sock"),
	}
}

// Check asks a running driver what the kubelet asks it: its registration
// info (which must name driverName as a DRA plugin) and a prepare of no
// claims. It is the DaemonSet's startup and liveness probe
// (`jsplan-dra --probe`): it fails while the driver has not started its
// services and when they stopped answering.
func (s Sockets) Check(ctx context.Context, driverName string) error {
	reg, err := grpc.NewClient("unix://"+s.Registration, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer reg.Close()
	info, err := registerapi.NewRegistrationClient(reg).GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		return fmt.Errorf("registration socket %s: %w", s.Registration, err)
	}
	if info.Type != registerapi.DRAPlugin || info.Name != driverName {
		return fmt.Errorf("registration socket %s: a %s plugin named %q, not the DRA driver %s", s.Registration, info.Type, info.Name, driverName)
	}
	dra, err := grpc.NewClient("unix://"+s.DRA, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer dra.Close()
	if _, err := drapb.NewDRAPluginClient(dra).NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{}); err != nil {
		return fmt.Errorf("DRA socket %s: %w", s.DRA, err)
	}
	return nil
}
