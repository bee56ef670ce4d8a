// Command pause is the pod sandbox ("infra") container of our local Kubernetes.
//
// It holds the pod's namespaces open and does nothing else: it exits 0 on SIGTERM or SIGINT,
// reaps any zombie re-parented to it (it is PID 1 of the pod when the PID namespace is shared),
// and otherwise blocks forever. It has no dependencies and is built static (CGO_ENABLED=0).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-v", "--version":
			fmt.Printf("pause %s\n", version)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: %s [--version]\n", os.Args[0])
			os.Exit(2)
		}
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	// Printed once the handlers are installed: from here on SIGTERM and SIGINT exit 0 (before,
	// in the first milliseconds, the Go runtime would exit 2). Tests wait for this line.
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: ready (warning: not running as PID 1)")
	} else {
		fmt.Fprintln(os.Stderr, "pause: ready")
	}
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal: %v\n", sig)
			os.Exit(0)
		}
	}
}
