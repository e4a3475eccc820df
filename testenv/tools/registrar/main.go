// Glue: registers a CSI driver with the kubelet (the kubelet's plugin-registration API on
// plugins_registry/<name>-reg.sock), the job of kubernetes-csi's node-driver-registrar, which
// the Go module proxy refuses.
//
// Why not pvcheck-test-csi's own --registration-dir: the kubelet (v1.34) dials registration
// sockets without grpc.WithAuthority, so grpc-go sends the percent-encoded socket path as
// :authority; the Rust driver's HTTP/2 server (h2, via tonic) refuses such an authority and
// answers RST_STREAM PROTOCOL_ERROR, which the kubelet logs as "failed to get plugin info using
// RPC GetInfo ... stream terminated by RST_STREAM with error code: PROTOCOL_ERROR". (The
// kubelet's CSI client sets authority "localhost", so the CSI socket itself works.)
//
//	registrar --name NAME --endpoint KUBELET_PATH_OF_CSI_SOCKET --registration-dir DIR
//
// Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not serve, 2 bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registration struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	fmt.Fprintf(os.Stderr, "registrar: kubelet asked for plugin info of %s\n", r.name)
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint,
		SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		fmt.Fprintf(os.Stderr, "registrar: kubelet registered %s\n", r.name)
	} else {
		fmt.Fprintf(os.Stderr, "registrar: kubelet refused %s: %s\n", r.name, s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	name := flag.String("name", "", "CSI driver name")
	endpoint := flag.String("endpoint", "", "the CSI socket's path as the kubelet sees it")
	dir := flag.String("registration-dir", "", "the kubelet's plugins_registry directory (as mounted here)")
	flag.Parse()
	if *name == "" || *endpoint == "" || *dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "registrar: --name, --endpoint and --registration-dir are required")
		os.Exit(2)
	}
	sock := filepath.Join(*dir, *name+"-reg.sock")
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "registrar: %v\n", err)
		os.Exit(1)
	}
	// The socket is removed on the way out only while it is still this one: in a rollout (or a
	// pod deleted with grace period 0) the next registrar may already have made its own at the
	// same path, and removing that one makes the kubelet deregister the driver for good.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	mine, err := os.Stat(sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "registrar: %v\n", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &registration{name: *name, endpoint: *endpoint})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; srv.Stop() }()
	fmt.Fprintf(os.Stderr, "registrar: serving %s for %s (endpoint %s)\n", sock, *name, *endpoint)
	err = srv.Serve(l)
	if now, serr := os.Stat(sock); serr == nil && os.SameFile(mine, now) {
		_ = os.Remove(sock)
	} else {
		fmt.Fprintf(os.Stderr, "registrar: %s is no longer this registrar's socket: left in place\n", sock)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "registrar: %v\n", err)
		os.Exit(1)
	}
}
