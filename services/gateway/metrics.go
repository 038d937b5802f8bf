package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/telemetry"
)

// Route classes of the gateway's requests, a bounded label.
const (
	classAPI    = iota // /api/v1/*, forwarded to a service
	classWS            // /ws, handed to a ws replica
	classWeb           // the web client
	classHealth        // /healthz, /readyz
	numClasses
)

var classNames = [numClasses]string{"api", "ws", "web", "health"}

// codeClasses are the status classes counted (1xx for upgraded sockets).
var codeClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// observe counts and times the gateway's requests
// (papo_gateway_requests_total by route class and status class,
// papo_gateway_request_duration_seconds by route class) and continues
// callers' traces. /ws is only counted when it arrives: its response
// writer stays the server's own, so the hand-off can take the
// connection over.
func observe(reg prometheus.Registerer, tp trace.TracerProvider, next http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_gateway_requests_total",
		Help: "Requests through the public entry, by route class (api, ws, web, health) and status class (ws: counted when they arrive, code \"\").",
	}, []string{"route", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "papo_gateway_request_duration_seconds", Help: "Time to answer a request through the public entry, by route class.",
		Buckets: telemetry.LatencyBuckets,
	}, []string{"route"})
	reg.MustRegister(requests, durations)
	var counts [numClasses][len(codeClasses)]prometheus.Counter
	var times [numClasses]prometheus.Observer
	for c := range numClasses {
		for k, code := range codeClasses {
			counts[c][k] = requests.WithLabelValues(classNames[c], code)
		}
		times[c] = durations.WithLabelValues(classNames[c])
	}
	traced := telemetry.HTTP(tp, nil)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := classOf(r.URL.Path)
		if class == classWS {
			counts[classWS][0].Inc()
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &telemetry.StatusRecorder{ResponseWriter: w}
		traced.ServeHTTP(rec, r)
		times[class].Observe(time.Since(start).Seconds())
		k := rec.Status / 100
		if rec.Status == 0 {
			k = 2
		}
		if k < 1 || k > 5 {
			k = 5
		}
		counts[class][k].Inc()
	})
}

func classOf(path string) int {
	switch {
	case strings.HasPrefix(path, "/api/"):
		return classAPI
	case path == "/ws":
		return classWS
	case path == "/healthz" || path == "/readyz":
		return classHealth
	}
	return classWeb
}
