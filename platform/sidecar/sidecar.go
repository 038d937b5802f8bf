// Package sidecar connects a service to its Dapr sidecar: a gRPC client
// for the SDK (pub/sub, state, bindings, secrets) and a readiness probe.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"syscall"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/papochat/papo/platform/telemetry"
)

// APITokenHeader carries the Dapr API token on every call to a sidecar's
// HTTP or gRPC API (daprd checks it when it runs with DAPR_API_TOKEN).
const APITokenHeader = "dapr-api-token"

// Client returns a Dapr SDK client for the sidecar's gRPC API on
// 127.0.0.1:grpcPort that sends apiToken with every call, streams
// included. It does not block: the connection is made on first use, so a
// service can start serving /healthz before its sidecar is up (daprd
// waits for the app's port, so blocking here would deadlock).
//
// The SDK attaches DAPR_API_TOKEN only to connections it dials itself;
// this connection is papo's, so the token goes in through interceptors.
// Every call also carries the trace context of its ctx as traceparent
// metadata, which daprd continues (its spans, and the CloudEvent of a
// publish, join the caller's trace).
func Client(grpcPort, apiToken string) (dapr.Client, error) {
	outgoing := func(ctx context.Context) context.Context {
		if apiToken != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, APITokenHeader, apiToken)
		}
		if tp := telemetry.TraceParent(ctx); tp != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, telemetry.TraceParentHeader, tp)
		}
		return ctx
	}
	conn, err := grpc.NewClient("127.0.0.1:"+grpcPort,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The sidecar is on loopback: after it restarts, reconnect within
		// a second, not after gRPC's default backoff (which grows to
		// minutes and kept an app away from its restarted sidecar for
		// seconds after the sidecar was ready).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(outgoing(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(outgoing(ctx), desc, cc, method, opts...)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dial dapr sidecar on port %s: %w", grpcPort, err)
	}
	return dapr.NewClientWithConnection(conn), nil
}

// Probe checks the sidecar's outbound readiness: its components are loaded
// and it can serve the app's calls. It does not depend on the app itself.
type Probe struct {
	url string
	hc  *http.Client
}

// NewProbe returns a Probe for the sidecar whose HTTP API is on
// 127.0.0.1:httpPort.
func NewProbe(httpPort string) *Probe {
	return &Probe{
		url: "http://127.0.0.1:" + httpPort + "/v1.0/healthz/outbound",
		hc:  &http.Client{Timeout: 2 * time.Second},
	}
}

// Check returns nil when the sidecar is ready.
func (p *Probe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		// The error names the sidecar's URL; /readyz shows this text, so
		// only the kind of failure goes into it.
		return fmt.Errorf("dapr sidecar %s", Reason(err))
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("dapr sidecar not ready: %s", resp.Status)
	}
	return nil
}

// Wait polls Check until the sidecar is ready or ctx is done.
func (p *Probe) Wait(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := p.Check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for dapr sidecar: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Persistent is a failure count RetryLevel always warns about.
const Persistent = 1 << 30

// RetryLevel is the log level for the n-th failure in a row of a call to
// the sidecar that is retried: a sidecar that has just started refuses
// streams and calls for a few seconds, so the first five (about 3 s of
// the usual doubling backoff from 100 ms) are debug, and a failure that
// persists is a warning.
func RetryLevel(n int) slog.Level {
	if n <= 5 {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// Reason names what kind of failure err is — "unreachable (connection
// refused)", "timed out", … — without the URL or address it holds, for
// answers a client may read.
func Reason(err error) string {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &timeout) && timeout.Timeout():
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "unreachable (connection refused)"
	case errors.Is(err, syscall.ECONNRESET):
		return "unreachable (connection reset)"
	default:
		return "unreachable"
	}
}
