// Package procs supervises the child processes of a papo stack: each in
// its own process group (so a signal reaches its children too, and Ctrl-C
// in the terminal reaches only the launcher, which stops everything in
// order), killed if the launcher dies, with every output line prefixed by
// the process's name.
package procs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one running child process.
type Proc struct {
	Name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	err     error

	mu   sync.Mutex
	tail []string // the last lines it printed, for error reports
}

// Spec describes a process to start.
type Spec struct {
	Name string
	Path string
	Args []string
	Dir  string
	Env  []string // added to the launcher's environment
}

// Start starts spec, copying its output, line by line and prefixed with its
// name padded to width, to out.
func Start(spec Spec, out io.Writer, width int) (*Proc, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// The kernel kills the child if the launcher dies, even by
		// SIGKILL, so no orphan outlives a crashed launcher.
		Pdeathsig: syscall.SIGKILL,
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	p := &Proc{Name: spec.Name, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	prefix := fmt.Sprintf("%-*s | ", width, spec.Name)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.remember(line)
			fmt.Fprintln(out, prefix+line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		<-copied
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) remember(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(p.tail, line)
	if len(p.tail) > 30 {
		p.tail = p.tail[len(p.tail)-30:]
	}
}

// Tail returns the last lines the process printed.
func (p *Proc) Tail() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// Pid is the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process's whole group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Stop sends SIGTERM to the group and waits up to grace for the exit, then
// sends SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits for the process to exit or ctx to end.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
