package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/launcher"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// usage is a snapshot of the CPU time used so far by every process of a
// stack (each app, each sidecar, the Kafka stand-in of kafka-postgres, and
// this process: load generator plus the embedded NATS of the local
// profile) and by the whole machine.
type usage struct {
	at    time.Time
	procs map[string]float64 // CPU seconds by process name
	sys   []float64          // /proc/stat "cpu" line: user nice system idle iowait …
}

func sampleUsage(s *launcher.Stack) usage {
	u := usage{at: time.Now(), procs: map[string]float64{}}
	pids := map[int]string{os.Getpid(): "bench+nats"}
	if pid := s.KafkaPid(); pid > 0 {
		pids[pid] = "kafka"
	}
	daprPort := map[string]string{}
	for _, a := range s.Apps("") {
		if pid := a.Pid(); pid > 0 {
			pids[pid] = a.Name
		}
		daprPort[strconv.Itoa(a.DaprHTTP)] = a.Name + ".dapr"
	}
	// Sidecars are found by their --dapr-http-port.
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("daprd")) {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if i := slices.Index(args, "--dapr-http-port"); i >= 0 && i+1 < len(args) {
			if name, ok := daprPort[args[i+1]]; ok {
				pid, _ := strconv.Atoi(filepath.Base(d))
				pids[pid] = name
			}
		}
	}
	for pid, name := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name: utime is the
		// 14th field of the line, stime the 15th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		u.procs[name] = (ut + st) / clockTicks
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for _, v := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			u.sys = append(u.sys, n)
		}
	}
	return u
}

// since describes what happened between prev and u: the busiest processes
// in cores (CPU seconds per second) and the machine's split of time.
func (u usage) since(prev usage) string {
	wall := u.at.Sub(prev.at).Seconds()
	type row struct {
		name  string
		cores float64
	}
	var rows []row
	var stack float64
	for name, v := range u.procs {
		c := (v - prev.procs[name]) / wall
		rows = append(rows, row{name, c})
		stack += c
	}
	slices.SortFunc(rows, func(a, b row) int {
		switch {
		case a.cores > b.cores:
			return -1
		case a.cores < b.cores:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var parts []string
	for i, r := range rows {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", r.name, r.cores))
	}
	out := fmt.Sprintf("stack+bench %.2f cores (%s)", stack, strings.Join(parts, ", "))
	if len(u.sys) >= 5 && len(prev.sys) >= 5 {
		var total float64
		d := make([]float64, len(u.sys))
		for i := range u.sys {
			d[i] = u.sys[i] - prev.sys[i]
			total += d[i]
		}
		if total > 0 {
			out += fmt.Sprintf("; machine: busy %.0f%%, iowait %.0f%%, idle %.0f%%",
				100*(total-d[3]-d[4])/total, 100*d[4]/total, 100*d[3]/total)
		}
	}
	return out
}
