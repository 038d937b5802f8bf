package main

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
)

// daprProxy forwards a request, path and query unchanged, to appID through
// the local sidecar's service invocation API. Headers (the bearer token,
// the request id) travel with it; the callee's status and body come back
// as they are. Bodies over maxBody are refused with 413.
func daprProxy(inv *invoke.Client, appID string, maxBody int64, log *slog.Logger) http.Handler {
	base, err := url.Parse(inv.URL(appID, ""))
	if err != nil {
		panic(err) // inv.URL always builds a valid URL from a fixed pattern
	}
	prefix := strings.TrimSuffix(base.Path, "/")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = base.Scheme
			pr.Out.URL.Host = base.Host
			pr.Out.URL.Path = prefix + pr.In.URL.Path
			pr.Out.URL.RawPath = prefix + pr.In.URL.EscapedPath()
			pr.Out.Host = base.Host
			pr.SetXForwarded()
		},
		Transport:  sharedTransport,
		BufferPool: &copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				httpapi.Error(w, r, log, apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBody))
				return
			}
			log.WarnContext(r.Context(), "upstream failed", "app_id", appID, "path", r.URL.Path, "err", err,
				"request_id", httpapi.RequestID(r.Context()))
			httpapi.Error(w, r, log, apierror.New(apierror.Unavailable, "unavailable", "the %s service is unavailable", appID))
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			httpapi.Error(w, r, log, apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rp.ServeHTTP(w, r)
	})
}

// copyBuffers lends the proxies their 32 KiB copy buffers, which
// httputil.ReverseProxy would otherwise allocate for every request.
var copyBuffers = bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte  { return b.pool.Get().(*[32 << 10]byte)[:] }
func (b *bufferPool) Put(p []byte) { b.pool.Put((*[32 << 10]byte)(p)) }

var sharedTransport = &http.Transport{
	MaxIdleConns:        512,
	MaxIdleConnsPerHost: 512,
	IdleConnTimeout:     90 * time.Second,
	ForceAttemptHTTP2:   false,
}
