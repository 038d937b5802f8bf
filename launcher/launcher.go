// Package launcher starts a whole papo stack on one machine: the profile's
// infrastructure (an embedded NATS JetStream for the local profile, a Kafka
// stand-in for kafka-postgres), every
// service with its own daprd sidecar, two ws replicas, and waits until each
// is ready. `make run` (cmd/papo) and the end-to-end tests use it alike.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/kafkafake"
	"github.com/papochat/papo/launcher/natsjs"
	"github.com/papochat/papo/platform/events"
)

// Services are the six papo services, in start order.
var Services = []string{"auth", "message", "presence", "notification", "ws", "gateway"}

// Tokens are a stack's two API tokens (docs/ops.md, security model).
type Tokens struct {
	// App is APP_API_TOKEN: each sidecar sends it to its app, and every
	// app refuses other callers (the gateway sends it to the ws replicas).
	App string
	// Dapr is DAPR_API_TOKEN: each sidecar refuses API calls without it.
	Dapr string
}

// Stack is a running papo system.
type Stack struct {
	// GatewayURL is the public entry, e.g. http://127.0.0.1:8080, or
	// https://… with Options.TLS.
	GatewayURL string
	// TLS are the local CA and the gateway's certificate with
	// Options.TLS, else nil.
	TLS     *TLSFiles
	Profile Profile
	DataDir string
	// Tokens are made at random for each start and kept, readable by the
	// owner only, in <DataDir>/api-tokens.env.
	Tokens Tokens
	// NATSURL is the NATS JetStream server of the pub/sub components, when
	// the profile uses one (embedded or not); tests read the broker there.
	NATSURL string

	opts Options
	// tracing is the generated tracing Configuration, or "" when no trace
	// endpoint is set.
	tracing string
	nats    *natsjs.Server
	kafka   *kafkafake.Server
	sink    *pushSink
	vapid   vapidKeys
	apps    []*App
	lock    *os.File

	// handoffDir holds the ws replicas' hand-off sockets; removed at Stop
	// when it is a temporary folder (handoffTemp).
	handoffDir  string
	handoffTemp bool

	// width aligns the processes' output prefixes.
	width int
	// stopSupervising ends the supervisors; supervising waits for them.
	stopSupervising context.CancelFunc
	supervising     sync.WaitGroup
}

// Apps returns the replicas of appID, or every app when appID is "".
func (s *Stack) Apps(appID string) []*App {
	var out []*App
	for _, a := range s.apps {
		if appID == "" || a.AppID == appID {
			out = append(out, a)
		}
	}
	return out
}

// App returns the app named name ("ws-1", "message", …) or nil.
func (s *Stack) App(name string) *App {
	for _, a := range s.apps {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Start brings a stack up and returns when every service answers /readyz.
// On error everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	profile, ok := Profiles[opts.Profile]
	if !ok {
		profile = Profile{Name: opts.Profile}
	}
	componentsSrc := opts.ComponentsDir
	if componentsSrc == "" {
		componentsSrc = filepath.Join(opts.Root, "components", opts.Profile)
	}
	if _, err := os.Stat(componentsSrc); err != nil {
		return nil, fmt.Errorf("profile %q: %w", opts.Profile, err)
	}
	if err := profile.CheckNeeds(ctx); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{Profile: profile, DataDir: dataDir, opts: opts}
	if err := s.takeLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	// Finding (on a new machine: building) daprd and building the
	// services overlap: each build waits on downloads and links alone.
	binDir := filepath.Join(dataDir, "bin")
	if opts.BinDir != "" {
		if binDir, err = filepath.Abs(opts.BinDir); err != nil {
			return nil, err
		}
	}
	var daprdPath string
	var daprdErr error
	located := make(chan struct{})
	go func() {
		defer close(located)
		daprdPath, daprdErr = daprd.Locate(ctx, opts.Root, opts.Progress)
	}()
	buildErr := buildServices(ctx, opts.Root, binDir, opts.Progress)
	<-located
	if err := errors.Join(daprdErr, buildErr); err != nil {
		return nil, err
	}

	vars := map[string]string{
		"PAPO_DATA_DIR":     dataDir,
		"PAPO_SECRETS_FILE": filepath.Join(dataDir, "secrets.json"),
	}
	if profile.EmbeddedNATS {
		port := opts.NATSPort
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.nats, err = natsjs.Start(port, filepath.Join(dataDir, "nats"))
		if err != nil {
			return nil, err
		}
		vars["PAPO_NATS_URL"] = s.nats.URL()
		fmt.Fprintf(opts.Progress, "papo: embedded NATS JetStream on %s\n", s.nats.URL())
	} else if profile.NATSURL != "" {
		vars["PAPO_NATS_URL"] = profile.NATSURL
	}
	if url := vars["PAPO_NATS_URL"]; url != "" {
		s.NATSURL = url
		if err := natsjs.EnsureStreams(ctx, url, events.AllTopics, 24*time.Hour); err != nil {
			return nil, err
		}
	}
	if profile.EmbeddedKafka {
		if err := s.startKafka(ctx, binDir); err != nil {
			return nil, err
		}
		vars["PAPO_KAFKA_BROKERS"] = s.kafka.Addr()
		fmt.Fprintf(opts.Progress, "papo: embedded Kafka (kfake) on %s, data in %s\n", s.kafka.Addr(), filepath.Join(dataDir, "kafka"))
	}
	if opts.RedisDB < 0 || opts.RedisDB > 15 {
		return nil, fmt.Errorf("redis database %d is not 0-15", opts.RedisDB)
	}
	vars["PAPO_REDIS_DB"] = strconv.Itoa(opts.RedisDB)
	vars["PAPO_PUSH_URL"] = opts.PushURL
	if opts.PushURL == "" {
		if s.sink, err = startPushSink(opts.Log, &http.Client{Timeout: 10 * time.Second}); err != nil {
			return nil, err
		}
		vars["PAPO_PUSH_URL"] = s.sink.url
	}
	if s.vapid, err = loadVAPID(dataDir); err != nil {
		return nil, err
	}
	if err := ensureFile(vars["PAPO_SECRETS_FILE"], "{}\n"); err != nil {
		return nil, err
	}
	resources := filepath.Join(dataDir, "components")
	_ = os.RemoveAll(resources)
	if err := renderComponents(componentsSrc, resources, vars); err != nil {
		return nil, err
	}
	if err := s.writeNameResolution(); err != nil {
		return nil, err
	}
	if err := createSQLiteFiles(resources, filepath.Join(dataDir, "nameresolution.db")); err != nil {
		return nil, err
	}
	if opts.TraceEndpoint != "" {
		if s.tracing, err = s.tracingConfig(opts.TraceEndpoint); err != nil {
			return nil, err
		}
	}

	if s.Tokens, err = newTokens(filepath.Join(dataDir, "api-tokens.env")); err != nil {
		return nil, err
	}
	if err := s.makeHandoffDir(); err != nil {
		return nil, err
	}
	if err := s.setUpTLS(); err != nil {
		return nil, err
	}
	if err := s.plan(binDir, resources, vars); err != nil {
		return nil, err
	}
	sidecarMetrics := daprd.LoopbackMetrics(ctx, daprdPath)
	for _, a := range s.apps {
		a.sidecar.Metrics = sidecarMetrics
	}
	if err := s.writePrometheusConfig(); err != nil {
		return nil, err
	}
	for _, a := range s.apps {
		a.sidecar.ResourcesDir = resources
		a.daprdPath = daprdPath
		s.width = max(s.width, len(a.Name)+5)
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := s.startApps(readyCtx, resources); err != nil {
		return nil, err
	}
	if err := s.waitReady(readyCtx); err != nil {
		return nil, err
	}
	if err := s.waitInvocation(readyCtx); err != nil {
		return nil, err
	}
	if err := s.checkPublicTLS(readyCtx); err != nil {
		return nil, err
	}
	s.supervise()
	return s, nil
}

// takeLock makes sure one launcher at a time uses a data dir.
func (s *Stack) takeLock() error {
	f, err := os.OpenFile(filepath.Join(s.DataDir, "launcher.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another papo stack is running with data dir %s (stop it first, or set another data dir)", s.DataDir)
	}
	s.lock = f
	return nil
}

// Stop stops the stack in order: the gateway first (no new clients), then
// ws (clients are told to go away), then the other services, their
// sidecars, and the broker.
func (s *Stack) Stop() {
	if s.stopSupervising != nil {
		s.stopSupervising()
		s.supervising.Wait()
	}
	stopAll := func(appIDs ...string) {
		var wg sync.WaitGroup
		for _, a := range s.apps {
			for _, id := range appIDs {
				if a.AppID == id {
					wg.Add(1)
					go func() { defer wg.Done(); a.Stop() }()
				}
			}
		}
		wg.Wait()
	}
	stopAll("gateway")
	stopAll("ws")
	stopAll("auth", "message", "presence", "notification")
	if s.nats != nil {
		s.nats.Stop()
		s.nats = nil
	}
	if s.kafka != nil {
		s.kafka.Stop()
		s.kafka = nil
	}
	if s.sink != nil {
		s.sink.stop()
		s.sink = nil
	}
	if s.handoffTemp {
		_ = os.RemoveAll(s.handoffDir)
		s.handoffTemp = false
	}
	if s.lock != nil {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
}

// KafkaPid is the process id of the Kafka stand-in (kafka-postgres), or
// 0 when the stack runs none; benchmarks count its CPU.
func (s *Stack) KafkaPid() int {
	if s.kafka == nil {
		return 0
	}
	return s.kafka.Pid()
}

// startKafka builds and starts the Kafka stand-in with its data in the
// data dir. Each topic keeps its messages as long as its JetStream stream
// in the local profile does (natsjs): announcements of what is durable
// elsewhere a quarter of an hour, the queues of work a day.
func (s *Stack) startKafka(ctx context.Context, binDir string) error {
	bin := filepath.Join(binDir, "kafkafake")
	fmt.Fprintf(s.opts.Progress, "papo: building the Kafka stand-in (tools/kafkafake) into %s\n", bin)
	if err := kafkafake.Build(ctx, s.opts.Root, bin); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	topics := map[string]time.Duration{}
	for _, topic := range events.AllTopics {
		topics[topic] = natsjs.StreamConfig(topic, 24*time.Hour).MaxAge
	}
	s.kafka, err = kafkafake.Start(ctx, kafkafake.Options{
		Bin:     bin,
		Port:    port,
		DataDir: filepath.Join(s.DataDir, "kafka"),
		Topics:  topics,
		Log:     s.opts.Log,
	})
	return err
}

// DaprdPath returns the daprd binary the stack uses.
func (s *Stack) DaprdPath(ctx context.Context) (string, error) {
	return daprd.Locate(ctx, s.opts.Root, s.opts.Progress)
}
