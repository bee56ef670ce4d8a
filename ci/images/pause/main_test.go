package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as pause itself when re-executed with PAUSE_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("PAUSE_TEST_MAIN") == "1" {
		main()
		os.Exit(3) // main only returns for --version
	}
	os.Exit(m.Run())
}

func startPause(t *testing.T) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PAUSE_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stderr)
	line, err := r.ReadString('\n') // handlers are installed once this line is out
	if err != nil || !strings.Contains(line, "pause: ready") {
		t.Fatalf("unexpected first line %q (%v)", line, err)
	}
	return cmd, r
}

func TestExitsZeroOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, r := startPause(t)
			// A SIGCHLD with nothing to reap must not stop it.
			if err := cmd.Process.Signal(syscall.SIGCHLD); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			type result struct {
				stderr []byte
				err    error
			}
			done := make(chan result, 1)
			go func() {
				rest, _ := io.ReadAll(r) // read to EOF before Wait closes the pipe
				done <- result{rest, cmd.Wait()}
			}()
			select {
			case res := <-done:
				if res.err != nil {
					t.Fatalf("pause exited with %v after %v", res.err, sig)
				}
				if !strings.Contains(string(res.stderr), "shutting down") {
					t.Fatalf("no shutdown message: %q", res.stderr)
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("pause did not exit on %v", sig)
			}
		})
	}
}
