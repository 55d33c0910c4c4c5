// hearth-device-plugin advertises simulated accelerators to the kubelet through its own device-plugin
// API (v1beta1), so that the local cluster schedules and limits model pods the way a GPU or NPU node
// does: `--resource nvidia.com/gpu=4 --resource huawei.com/Ascend910=8`. Allocate hands each container
// the vendor's visible-devices variable, as the real plugins do. It re-registers whenever the kubelet
// restarts (the kubelet removes plugin sockets when it starts).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type resources []string

func (r *resources) String() string     { return strings.Join(*r, ",") }
func (r *resources) Set(v string) error { *r = append(*r, v); return nil }

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	devices  []*pluginapi.Device
	envName  string
	socket   string
	server   *grpc.Server
}

// The variable each vendor's runtime reads to find its devices.
func visibleDevicesEnv(resource string) string {
	switch {
	case strings.HasPrefix(resource, "nvidia.com/"):
		return "NVIDIA_VISIBLE_DEVICES"
	case strings.HasPrefix(resource, "huawei.com/"):
		return "ASCEND_VISIBLE_DEVICES"
	default:
		return "VISIBLE_DEVICES"
	}
}

func newPlugin(spec, dir string) (*plugin, error) {
	name, count, ok := strings.Cut(spec, "=")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || !strings.Contains(name, "/") {
		return nil, fmt.Errorf("--resource %q: want vendor-domain/name=COUNT, e.g. nvidia.com/gpu=4", spec)
	}
	p := &plugin{resource: name, envName: visibleDevicesEnv(name)}
	for i := 0; i < n; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: strconv.Itoa(i), Health: pluginapi.Healthy})
	}
	p.socket = filepath.Join(dir, "hearth-"+strings.NewReplacer("/", "-", ".", "-").Replace(name)+".sock")
	return p, nil
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done() // simulated devices never turn unhealthy
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{p.envName: strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

// serve (re)creates the plugin's socket and registers it with the kubelet.
func (p *plugin) serve(dir string) error {
	if p.server != nil {
		p.server.Stop()
	}
	_ = os.Remove(p.socket)
	listener, err := net.Listen("unix", p.socket)
	if err != nil {
		return err
	}
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	go func() { _ = p.server.Serve(listener) }()

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
	})
	return err
}

func main() {
	var specs resources
	dir := flag.String("device-plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin folder")
	flag.Var(&specs, "resource", "an extended resource and how many devices to advertise: NAME=COUNT (repeatable)")
	flag.Parse()
	if len(specs) == 0 {
		log.Fatal("no --resource given")
	}
	var plugins []*plugin
	for _, spec := range specs {
		p, err := newPlugin(spec, *dir)
		if err != nil {
			log.Fatal(err)
		}
		plugins = append(plugins, p)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	registered := make(map[*plugin]bool)
	for {
		for _, p := range plugins {
			if _, err := os.Stat(p.socket); err != nil {
				registered[p] = false // the kubelet (re)started and cleared the folder
			}
			if !registered[p] {
				if err := p.serve(*dir); err != nil {
					log.Printf("%s: registration with the kubelet failed, retrying: %v", p.resource, err)
					continue
				}
				registered[p] = true
				log.Printf("%s: %d devices registered with the kubelet", p.resource, len(p.devices))
			}
		}
		select {
		case <-stop:
			for _, p := range plugins {
				if p.server != nil {
					p.server.Stop()
				}
				_ = os.Remove(p.socket)
			}
			return
		case <-ticker.C:
		}
	}
}
