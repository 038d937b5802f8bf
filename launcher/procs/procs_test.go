package procs

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestOutputLinesArePrefixedWithTheName(t *testing.T) {
	var out syncBuffer
	p, err := Start(Spec{Name: "svc", Path: "/bin/sh", Args: []string{"-c", "echo one; echo two >&2"}}, &out, 6)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	got := out.String()
	for _, want := range []string{"svc    | one\n", "svc    | two\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if tail := p.Tail(); len(tail) != 2 {
		t.Errorf("tail %q, want both lines", tail)
	}
}

// TestStopKillsTheWholeProcessGroup: a child that ignores SIGTERM and has
// children of its own leaves nothing behind once Stop returns.
func TestStopKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := dir + "/grandchild.pid"
	script := "trap '' TERM; sleep 300 & echo $! > " + pidFile + "; wait"
	p, err := Start(Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", script}}, &syncBuffer{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	deadline := time.Now().Add(5 * time.Second)
	for grandchild == 0 {
		if b, err := os.ReadFile(pidFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			grandchild, _ = strconv.Atoi(string(bytes.TrimSpace(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the grandchild never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Stop(300 * time.Millisecond)
	if !p.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	deadline = time.Now().Add(3 * time.Second)
	for syscall.Kill(grandchild, 0) == nil {
		// A killed grandchild may linger as a zombie of init for a moment.
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(grandchild) + "/stat"); strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d outlived Stop", grandchild)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
