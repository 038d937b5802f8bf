package launcher

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// pushSink stands in for a push provider in local runs: it answers every
// push the notification service sends through the `push` binding with 200
// and prints it, so a developer sees what would have been pushed.
type pushSink struct {
	srv *http.Server
	url string
}

func startPushSink(log io.Writer) (*pushSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start push sink: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(io.LimitReader(r.Body, 8<<10))
			fmt.Fprintf(log, "%-12s | %s %s %s\n", "push-sink", r.Method, r.URL.Path, strings.TrimSpace(string(b)))
			w.WriteHeader(http.StatusOK)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return &pushSink{srv: srv, url: "http://" + ln.Addr().String()}, nil
}

func (p *pushSink) stop() { _ = p.srv.Close() }
