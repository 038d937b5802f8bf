package sidecar_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/telemetry"
)

// tokenRecorder is a gRPC server that answers every method with an error
// after noting the metadata it was sent.
type tokenRecorder struct {
	mu   sync.Mutex
	seen map[string]metadata.MD // by method
}

func (r *tokenRecorder) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	r.mu.Lock()
	r.seen[method] = md
	r.mu.Unlock()
	return status.Error(codes.Unimplemented, "recorded")
}

func (r *tokenRecorder) get(method, key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[method].Get(key)
}

func TestClientSendsTheDaprAPITokenAndTraceContextOnCallsAndStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecorder{seen: map[string]metadata.MD{}}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(rec.handle))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	const token = "0123456789abcdef0123456789abcdef"
	c, err := sidecar.Client(strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const tp = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	ctx, cancel := context.WithTimeout(telemetry.WithTraceParent(context.Background(), tp), 10*time.Second)
	defer cancel()

	if err := c.PublishEvent(ctx, "pubsub", "t", []byte("{}")); err == nil {
		t.Fatal("publish to the recorder succeeded")
	}
	// A streaming subscription: its first receive fails with the
	// recorder's error, after the stream was opened with the token.
	if sub, err := c.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: "fanout", Topic: "t"}); err == nil {
		_, _ = sub.Receive()
		_ = sub.Close()
	}
	for _, method := range []string{
		"/dapr.proto.runtime.v1.Dapr/PublishEvent",
		"/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1",
	} {
		if got := rec.get(method, sidecar.APITokenHeader); len(got) != 1 || got[0] != token {
			t.Errorf("%s: dapr-api-token %q, want [%s]", method, got, token)
		}
		if got := rec.get(method, telemetry.TraceParentHeader); len(got) != 1 || got[0] != tp {
			t.Errorf("%s: traceparent %q, want [%s]", method, got, tp)
		}
	}
}

func TestReasonNamesTheFailureWithoutTheAddress(t *testing.T) {
	p := sidecar.NewProbe("1") // nothing listens on port 1
	err := p.Check(context.Background())
	if err == nil {
		t.Fatal("a sidecar answered on port 1")
	}
	for _, leak := range []string{"127.0.0.1", "http://", "healthz"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the probe's error %q names the sidecar (%q)", err, leak)
		}
	}
	if got := sidecar.Reason(context.DeadlineExceeded); got != "timed out" {
		t.Errorf("Reason(deadline) = %q", got)
	}
	if got := sidecar.Reason(errors.New("x")); got != "unreachable" {
		t.Errorf("Reason(other) = %q", got)
	}
}
