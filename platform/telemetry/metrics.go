package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the histogram buckets, in seconds, of papo's
// latencies: from half a millisecond (a sidecar hop on loopback) to ten
// seconds (a call's timeout).
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// SizeBuckets are the buckets of batch sizes (1 to 2048, powers of two).
var SizeBuckets = prometheus.ExponentialBuckets(1, 2, 12)

// Publishes counts and times one service's pub/sub publishes by topic
// and result (papo_pubsub_publish_duration_seconds). Topics are a fixed
// set (events.AllTopics); label values are resolved once per topic.
type Publishes struct {
	vec    *prometheus.HistogramVec
	topics map[string]*[2]prometheus.Observer
	other  *[2]prometheus.Observer
}

// NewPublishes registers the publish histogram on reg and resolves the
// labels of topics.
func NewPublishes(reg prometheus.Registerer, topics []string) *Publishes {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "papo_pubsub_publish_duration_seconds",
		Help:    "Time to publish one pub/sub message through the sidecar, by topic and result (ok, error).",
		Buckets: LatencyBuckets,
	}, []string{"topic", "result"})
	reg.MustRegister(vec)
	p := &Publishes{vec: vec, topics: map[string]*[2]prometheus.Observer{}}
	for _, t := range topics {
		p.topics[t] = &[2]prometheus.Observer{vec.WithLabelValues(t, "ok"), vec.WithLabelValues(t, "error")}
	}
	p.other = &[2]prometheus.Observer{vec.WithLabelValues("other", "ok"), vec.WithLabelValues("other", "error")}
	return p
}

// Observe records one publish to topic that started at start.
func (p *Publishes) Observe(topic string, start time.Time, err error) {
	if p == nil {
		return
	}
	o := p.topics[topic]
	if o == nil {
		o = p.other
	}
	i := 0
	if err != nil {
		i = 1
	}
	o[i].Observe(time.Since(start).Seconds())
}
