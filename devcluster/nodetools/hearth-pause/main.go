// hearth-pause holds a pod sandbox's namespaces, as the kubelet's pause image does: it sleeps until
// SIGTERM or SIGINT and reaps the children that a shared PID namespace hands it. The local cluster has no
// registry to pull registry.k8s.io/pause from, so it builds this one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
