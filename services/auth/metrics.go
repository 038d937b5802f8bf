package main

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
)

// Metrics count the outcome of every login, refresh and registration:
// "ok", or the error code the client was answered (docs/auth.md lists
// them: invalid_credentials, too_many_attempts, invalid_refresh_token,
// refresh_token_reused, …), which is the failure's reason.
type Metrics struct {
	logins, refreshes, registrations *outcomes
}

// outcomes is one counter vector with its label values resolved once each.
type outcomes struct {
	vec *prometheus.CounterVec
	mu  sync.Mutex
	by  map[string]prometheus.Counter
}

// maxReasons bounds the distinct codes counted by name; more are "other".
const maxReasons = 32

// NewMetrics registers the auth metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	mk := func(name, help string) *outcomes {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"})
		reg.MustRegister(vec)
		// "ok" exists from the start (at 0), for dashboards and rules.
		return &outcomes{vec: vec, by: map[string]prometheus.Counter{"ok": vec.WithLabelValues("ok")}}
	}
	return &Metrics{
		logins:        mk("papo_auth_logins_total", "Password logins, by result: ok or the error code (the failure's reason)."),
		refreshes:     mk("papo_auth_refreshes_total", "Token refreshes, by result: ok or the error code (the failure's reason)."),
		registrations: mk("papo_auth_registrations_total", "Registrations, by result: ok or the error code."),
	}
}

func (o *outcomes) count(err error) {
	result := "ok"
	if err != nil {
		result = apierror.CodeOf(err)
		if result == "" {
			result = "internal"
		}
	}
	o.mu.Lock()
	c, ok := o.by[result]
	if !ok {
		if len(o.by) >= maxReasons {
			result = "other"
		}
		if c, ok = o.by[result]; !ok {
			c = o.vec.WithLabelValues(result)
			o.by[result] = c
		}
	}
	o.mu.Unlock()
	c.Inc()
}

// counted counts the outcome of h in o; nil o counts nothing.
func counted(o *outcomes, h httpapi.HandlerFunc) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		if o != nil {
			o.count(err)
		}
		return err
	}
}
