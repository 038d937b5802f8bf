package notify

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count what the engine decides and sends (docs/ops.md).
type Metrics struct {
	batches prometheus.Counter
	counted prometheus.Counter
	pushes  [numPushResults]prometheus.Counter
}

type pushResult int

const (
	pushSent       pushResult = iota // the provider took it
	pushDuplicate                    // already sent by another replica or flush
	pushGone                         // the provider said the device is gone; removed
	pushFailed                       // gave up; dead-lettered
	pushUnrecorded                   // the dedupe key could not be written; not sent
	numPushResults
)

var pushNames = [numPushResults]string{"sent", "duplicate", "gone", "failed", "unrecorded"}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	batches := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_notification_batches_total", Help: "room.events batches decided by this replica.",
	})
	counted := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_notification_counted_total",
		Help: "Messages counted into a recipient's notification window (recipients with a device, not muted, offline or mentioned).",
	})
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_notification_pushes_total",
		Help: "Push notifications by result: sent, duplicate, gone (device removed), failed (dead-lettered), unrecorded.",
	}, []string{"result"})
	reg.MustRegister(batches, counted, pushes)
	m := &Metrics{batches: batches, counted: counted}
	for i := range numPushResults {
		m.pushes[i] = pushes.WithLabelValues(pushNames[i])
	}
	return m
}
