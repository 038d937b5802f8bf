package e2e

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// logTail keeps the last lines a stack's processes wrote, so a failing
// test can show what the services said (the full logs are printed only
// with -stack-log).
type logTail struct {
	mu    sync.Mutex
	lines []string
	next  int // where the next line goes once lines is full
	part  []byte
}

const tailLines = 400

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := string(l.part[:i])
		l.part = l.part[i+1:]
		if len(l.lines) < tailLines {
			l.lines = append(l.lines, line)
		} else {
			l.lines[l.next] = line
			l.next = (l.next + 1) % tailLines
		}
	}
	return len(p), nil
}

// String returns the kept lines, oldest first.
func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(append(append([]string{}, l.lines[l.next:]...), l.lines[:l.next]...), "\n")
}

// showOnFailure logs the tail of the stack's logs if t fails.
func (l *logTail) showOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last %d lines the stack's processes wrote:\n%s", tailLines, l)
		}
	})
}

func TestLogTailKeepsTheLastLines(t *testing.T) {
	var l logTail
	for i := range tailLines + 3 {
		_, _ = l.Write([]byte("line " + strings.Repeat("x", i%3) + "\n"))
	}
	_, _ = l.Write([]byte("half"))
	_, _ = l.Write([]byte(" and the rest\n"))
	got := strings.Split(l.String(), "\n")
	if len(got) != tailLines || got[len(got)-1] != "half and the rest" || got[0] != "line "+strings.Repeat("x", 4%3) {
		t.Fatalf("kept %d lines, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
}
