// Command kafkafake is the Kafka broker the launcher starts for the
// kafka-postgres profile: franz-go's kfake, a Kafka cluster written in Go
// that speaks the wire protocol daprd's Kafka component (sarama) uses, run
// as one broker on a loopback port.
//
// It creates papo's topics at start with the retention each is given
// (-topic name=duration), keeps committed offsets of a group that has no
// members for -offsets-retention (then the group is deleted: this is how
// the fan-out groups of stopped ws replicas go away), and with -data-dir
// keeps topics, records and committed offsets on disk, so a restart, or a
// kill -9, loses nothing the broker acknowledged (a power cut may lose the
// last moments: writes are not synced one by one).
//
// This module stays outside go.work, like tools/daprd: franz-go v1.22.3
// (pinned here because kfake does not compile with the v1.21.7 that its
// own go.mod names) needs klauspost/compress v1.20.3, and in the
// workspace that would raise the compression library of every service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kafkafake:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	port             int
	dataDir          string
	partitions       int
	topics           map[string]time.Duration
	offsetsRetention time.Duration
	logLevel         kfake.LogLevel
}

// topicFlag reads repeated -topic name=retention flags.
type topicFlag map[string]time.Duration

func (f topicFlag) String() string { return "" }

func (f topicFlag) Set(s string) error {
	name, d, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=retention, got %q", s)
	}
	ret, err := time.ParseDuration(d)
	if err != nil || ret < time.Minute {
		return fmt.Errorf("retention of %s: want a duration of at least 1m, got %q", name, d)
	}
	f[name] = ret
	return nil
}

func parse(args []string, stderr io.Writer) (config, error) {
	cfg := config{topics: map[string]time.Duration{}}
	fs := flag.NewFlagSet("kafkafake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.port, "port", 0, "port on 127.0.0.1 (required)")
	fs.StringVar(&cfg.dataDir, "data-dir", "", "keep topics, records and offsets here across restarts (empty: memory only)")
	fs.IntVar(&cfg.partitions, "partitions", 4, "partitions of every topic, created or auto-created")
	fs.Var(topicFlag(cfg.topics), "topic", "a topic to create at start, name=retention (repeatable)")
	fs.DurationVar(&cfg.offsetsRetention, "offsets-retention", 24*time.Hour, "how long a group without members keeps its offsets before it is deleted")
	level := fs.String("log-level", "warn", "none, error, warn, info or debug")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.port <= 0 || cfg.port > 65535 {
		return cfg, fmt.Errorf("-port %d: want a port of 127.0.0.1", cfg.port)
	}
	if cfg.partitions < 1 {
		return cfg, fmt.Errorf("-partitions %d: want at least 1", cfg.partitions)
	}
	if cfg.offsetsRetention < time.Minute {
		return cfg, fmt.Errorf("-offsets-retention %v: want at least 1m", cfg.offsetsRetention)
	}
	levels := map[string]kfake.LogLevel{"none": kfake.LogLevelNone, "error": kfake.LogLevelError,
		"warn": kfake.LogLevelWarn, "info": kfake.LogLevelInfo, "debug": kfake.LogLevelDebug}
	var ok bool
	if cfg.logLevel, ok = levels[*level]; !ok {
		return cfg, fmt.Errorf("-log-level %q: want none, error, warn, info or debug", *level)
	}
	return cfg, nil
}

// run serves until ctx ends, then closes the cluster, which writes what is
// still in memory to the data dir.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	opts := []kfake.Opt{
		kfake.Ports(cfg.port), // one broker, listening on 127.0.0.1 only
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.partitions),
		kfake.WithLogger(kfake.BasicLogger(stderr, cfg.logLevel)),
		kfake.BrokerConfigs(map[string]string{
			"offsets.retention.minutes": strconv.Itoa(int(cfg.offsetsRetention / time.Minute)),
			// Look for expired groups every minute, not every ten.
			"offsets.retention.check.interval.ms": "60000",
		}),
	}
	if cfg.dataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.dataDir))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start kfake on 127.0.0.1:%d: %w", cfg.port, err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	if err := ensureTopics(ctx, addr, cfg.partitions, cfg.topics); err != nil {
		return err
	}
	where := "in memory"
	if cfg.dataDir != "" {
		where = "in " + cfg.dataDir
	}
	fmt.Fprintf(stdout, "kafkafake: serving on %s, data %s\n", addr, where)
	<-ctx.Done()
	return nil
}

// ensureTopics creates each topic with its retention, or sets the
// retention of a topic kept from an earlier run. A topic's retention is
// what bounds the data dir: kfake deletes expired records only of topics
// that carry a retention of their own.
func ensureTopics(ctx context.Context, addr string, partitions int, topics map[string]time.Duration) error {
	if len(topics) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	names := make([]string, 0, len(topics))
	for name := range topics {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		ms := strconv.FormatInt(topics[name].Milliseconds(), 10)
		resp, err := adm.CreateTopic(ctx, int32(partitions), 1, map[string]*string{"retention.ms": &ms}, name)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			alt, aerr := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &ms}}, name)
			if aerr == nil {
				_, aerr = alt.On(name, nil)
			}
			err = aerr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
