// Package daprd finds a daprd 1.14 binary for the launcher, building the
// project's pinned one (tools/daprd) once when none is installed, and
// describes how one sidecar is started.
package daprd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Version is the daprd version papo pins.
const Version = "1.14.0"

// buildMark names papo's own daprd build in its --build-info (its git
// version): a build with papo's component set only, the cached SQLite
// name resolver, and Dapr's metrics served on the loopback address in
// PAPO_DAPRD_METRICS_ADDR (tools/daprd). The mark changes whenever the
// build does, so every machine builds the new one once.
const buildMark = "papo.slim.2"

// compatible reports whether a daprd version string is one papo runs on.
func compatible(v string) bool { return strings.HasPrefix(strings.TrimSpace(v), "1.14.") }

// Locate returns the path of a usable daprd: the one Installed finds,
// or else the project's pinned build (tools/daprd under root), built into
// the user cache dir with progress written to progress. Concurrent callers
// (parallel test binaries, `make run`'s early build and its launcher) wait
// for one build.
func Locate(ctx context.Context, root string, progress io.Writer) (string, error) {
	path, err := Installed(ctx)
	if err != nil || path != "" {
		return path, err
	}
	return Build(ctx, root, progress)
}

// Build builds the project's pinned daprd (tools/daprd under root) into
// the user cache dir, writing progress to progress, unless another caller
// finished that build while this one waited for its lock.
func Build(ctx context.Context, root string, progress io.Writer) (string, error) {
	cached, err := CachePath()
	if err != nil {
		return "", err
	}
	return build(ctx, root, cached, progress)
}

// Installed returns the path of a usable daprd that needs no build, or ""
// when there is none. In order it takes: $PAPO_DAPRD (an error when it is
// not 1.14.x); a daprd 1.14.x on PATH; the Dapr CLI's ~/.dapr/bin/daprd
// when it is 1.14.x; the project's build cached under the user cache dir.
func Installed(ctx context.Context) (string, error) {
	if p := os.Getenv("PAPO_DAPRD"); p != "" {
		if v, err := version(ctx, p); err != nil || !compatible(v) {
			return "", fmt.Errorf("PAPO_DAPRD=%s: version %q (%v), want %s", p, v, err, Version)
		}
		return p, nil
	}
	var candidates []string
	if p, err := exec.LookPath("daprd"); err == nil {
		candidates = append(candidates, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".dapr", "bin", "daprd"))
	}
	if cached, err := CachePath(); err == nil {
		candidates = append(candidates, cached)
	}
	for _, p := range candidates {
		if v, err := version(ctx, p); err == nil && compatible(v) {
			return p, nil
		}
	}
	return "", nil
}

// CachePath is where the project's own daprd build is kept.
func CachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache dir for daprd: %w", err)
	}
	return filepath.Join(dir, "papo", "bin", "daprd-"+Version+"-"+buildMark), nil
}

// LoopbackMetrics reports whether the daprd at path can serve its metrics
// on loopback only: true for papo's own build (PAPO_DAPRD_METRICS_ADDR).
// Upstream 1.14.0 cannot: it ignores --metrics-listen-address, and run
// with --metrics-listen-address 127.0.0.1 and DAPR_HOST_IP=127.0.0.1 it
// listened on *:port (verified), so its metrics stay off.
func LoopbackMetrics(ctx context.Context, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--build-info").Output()
	return err == nil && strings.Contains(string(out), buildMark)
}

func version(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	return strings.TrimSpace(string(out)), err
}

// build compiles tools/daprd into dst under an exclusive file lock.
func build(ctx context.Context, root, dst string, progress io.Writer) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(dst+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	fmt.Fprintf(progress, "papo: waiting for the daprd build lock (%s)\n", lock.Name())
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock daprd build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	// Another process may have finished the build while we waited.
	if v, err := version(ctx, dst); err == nil && compatible(v) {
		return dst, nil
	}

	src := filepath.Join(root, "tools", "daprd")
	fmt.Fprintf(progress, "papo: no daprd %s installed; building the pinned one from %s once.\n"+
		"papo: this downloads and compiles Dapr and papo's components (3 minutes or more on a new 2-core machine); later runs reuse %s\n", Version, src, dst)
	tmp := dst + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-v",
		"-ldflags", "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version="+Version+
			" -X github.com/dapr/dapr/pkg/buildinfo.gitversion=v"+Version+"-"+buildMark,
		"-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	cmd.Stdout = progress
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("build daprd: %w", err)
	}
	// "go build -v" names each package as it compiles; show a count and the
	// latest name so a long first build visibly moves.
	var last []string
	n := 0
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		n++
		last = append(last, line)
		if len(last) > 20 {
			last = last[1:]
		}
		if n%50 == 0 {
			fmt.Fprintf(progress, "papo: building daprd: %d packages, %s elapsed (%s)\n", n, time.Since(start).Round(time.Second), line)
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("build daprd: %w\n%s", err, strings.Join(last, "\n"))
	}
	if v, err := version(ctx, tmp); err != nil || !compatible(v) {
		return "", fmt.Errorf("built daprd reports version %q (%v)", v, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "papo: built daprd %s in %s\n", Version, time.Since(start).Round(time.Second))
	return dst, nil
}

// Sidecar describes one daprd process.
type Sidecar struct {
	AppID string
	// AppPort is the app's HTTP port; empty for an app-less sidecar.
	AppPort      string
	HTTPPort     int
	GRPCPort     int
	InternalPort int
	// MetricsPort serves Dapr's Prometheus metrics on 127.0.0.1 when
	// Metrics is set, which only papo's build can (LoopbackMetrics).
	MetricsPort int
	Metrics     bool
	PublicPort  int
	// ResourcesDir holds the component files.
	ResourcesDir string
	// Configs are Configuration files, applied in order.
	Configs  []string
	LogLevel string
	// ProfilePort, when set, serves Go's pprof on 127.0.0.1:ProfilePort
	// (daprd's --enable-profiling), for finding where a sidecar spends
	// its CPU under load.
	ProfilePort int
	// APIToken (DAPR_API_TOKEN) is what every caller of the sidecar's API
	// must send; AppToken (APP_API_TOKEN) is what the sidecar sends to
	// its app on every call. Empty leaves the check off (component tests).
	APIToken string
	AppToken string
}

// Args returns daprd's command line. Every port is explicit (daprd picks a
// random internal port otherwise, and a collision is fatal at start) and
// every listener is bound to loopback.
func (s Sidecar) Args() []string {
	args := []string{
		"--app-id", s.AppID,
		"--mode", "standalone",
		"--dapr-http-port", fmt.Sprint(s.HTTPPort),
		"--dapr-grpc-port", fmt.Sprint(s.GRPCPort),
		"--dapr-internal-grpc-port", fmt.Sprint(s.InternalPort),
		"--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--dapr-listen-addresses", "127.0.0.1",
		// daprd's own metrics server would listen on every interface
		// (LoopbackMetrics); papo's build serves them on loopback itself.
		"--enable-metrics=false",
		"--metrics-port", fmt.Sprint(s.MetricsPort),
		"--dapr-public-port", fmt.Sprint(s.PublicPort),
		"--dapr-public-listen-address", "127.0.0.1",
		"--resources-path", s.ResourcesDir,
		"--log-level", cmpOr(s.LogLevel, "warn"),
		"--dapr-graceful-shutdown-seconds", "5",
	}
	if s.AppPort != "" {
		args = append(args, "--app-port", s.AppPort, "--app-channel-address", "127.0.0.1")
	}
	for _, c := range s.Configs {
		args = append(args, "--config", c)
	}
	if s.ProfilePort != 0 {
		args = append(args, "--enable-profiling", "--profile-port", fmt.Sprint(s.ProfilePort))
	}
	return args
}

// Env returns the environment additions daprd needs: it announces
// 127.0.0.1 to name resolution instead of the machine's address, the API
// tokens (daprd reads them from the environment only), and where papo's
// build serves its metrics (127.0.0.1:MetricsPort).
func (s Sidecar) Env() []string {
	env := []string{"DAPR_HOST_IP=127.0.0.1"}
	if s.APIToken != "" {
		env = append(env, "DAPR_API_TOKEN="+s.APIToken)
	}
	if s.AppToken != "" {
		env = append(env, "APP_API_TOKEN="+s.AppToken)
	}
	if s.Metrics {
		env = append(env, fmt.Sprintf("PAPO_DAPRD_METRICS_ADDR=127.0.0.1:%d", s.MetricsPort))
	}
	return env
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ErrNotInstalled is returned when no daprd is found and building is not
// allowed.
var ErrNotInstalled = errors.New("daprd not installed")

// ServesHTTP reports whether a sidecar run with the Configuration file at
// path serves the HTTP API named api ("invoke", "state", …) under
// spec.api: daprd serves every HTTP API when the allow-list names none,
// and otherwise only those it names (and health). A denied name wins.
func ServesHTTP(path, api string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var c struct {
		Spec struct {
			API struct {
				Allowed []apiRule `yaml:"allowed"`
				Denied  []apiRule `yaml:"denied"`
			} `yaml:"api"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	has := func(rules []apiRule) (named, any bool) {
		for _, r := range rules {
			if strings.EqualFold(r.Protocol, "http") {
				any = true
				named = named || r.Name == api
			}
		}
		return named, any
	}
	if denied, _ := has(c.Spec.API.Denied); denied {
		return false, nil
	}
	allowed, anyHTTP := has(c.Spec.API.Allowed)
	return allowed || !anyHTTP, nil
}

type apiRule struct {
	Name     string `yaml:"name"`
	Version  string `yaml:"version"`
	Protocol string `yaml:"protocol"`
}
