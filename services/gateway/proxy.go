package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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

// restHeaders are the only request headers a REST call carries upstream:
// what the services read. Everything else a client sends stays at the
// edge — dapr-app-id (which would make the sidecar route the call to
// another app), dapr-api-token and any other dapr-* header, hop-by-hop
// headers, forwarding headers (the gateway sets X-Forwarded-For itself),
// cookies and trace headers.
var restHeaders = canonical("Authorization", "Content-Type", "Accept", httpapi.RequestIDHeader)

// wsHeaders are the request headers a WebSocket handshake carries to a ws
// replica: restHeaders' kind plus what the upgrade needs. Connection and
// Upgrade are the gateway's own by then (upstreamRequest sets them).
var wsHeaders = canonical("Authorization", "Origin", "User-Agent", httpapi.RequestIDHeader,
	"Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions")

func canonical(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[http.CanonicalHeaderKey(n)] = true
	}
	return m
}

// keepOnly deletes every header of h not in allowed.
func keepOnly(h http.Header, allowed map[string]bool) {
	for k := range h {
		if !allowed[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
}

type upstreamPathKey struct{}

// daprProxy forwards a request to appID through the local sidecar's
// service invocation API. The path upstream is rebuilt from the route the
// request matched (upstreamPath), the query travels unchanged, and of the
// headers only restHeaders, plus the client address in X-Forwarded-For and
// the sidecar's API token. The callee's status and body come back as they
// are when they are papo's; an error the sidecar made itself (its app is
// down, a breaker, a refusal) is answered 503 without its text, which
// names internal addresses. Bodies over maxBody are refused with 413.
func daprProxy(inv *invoke.Client, appID string, maxBody int64, log *slog.Logger) http.Handler {
	base, err := url.Parse(inv.URL(appID, ""))
	if err != nil {
		panic(err) // inv.URL always builds a valid URL from a fixed pattern
	}
	prefix := strings.TrimSuffix(base.Path, "/")
	unavailable := func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, r, log, apierror.New(apierror.Unavailable, "unavailable", "the %s service is unavailable", appID))
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			keepOnly(pr.Out.Header, restHeaders)
			up, _ := pr.In.Context().Value(upstreamPathKey{}).(string)
			decoded, _ := url.PathUnescape(up) // up is built escaped by upstreamPath
			pr.Out.URL.Scheme = base.Scheme
			pr.Out.URL.Host = base.Host
			pr.Out.URL.Path = prefix + decoded
			pr.Out.URL.RawPath = prefix + up
			pr.Out.Host = base.Host
			if a := clientAddrOf(pr.In.Context()); a.IsValid() {
				pr.Out.Header.Set("X-Forwarded-For", a.String())
			}
			inv.AddToken(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			return keepPapoErrors(resp, appID, log)
		},
		Transport:  sharedTransport,
		BufferPool: &copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				httpapi.Error(w, r, log, apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBody))
				return
			}
			if !errors.Is(err, errSidecarAnswer) {
				log.WarnContext(r.Context(), "upstream failed", "app_id", appID, "path", r.URL.Path, "err", err,
					"request_id", httpapi.RequestID(r.Context()))
			}
			unavailable(w, r)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			httpapi.Error(w, r, log, apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBody))
			return
		}
		up, err := upstreamPath(r)
		if err != nil {
			httpapi.Error(w, r, log, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), upstreamPathKey{}, up))
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rp.ServeHTTP(w, r)
	})
}

// errSidecarAnswer marks an error answer that came from the sidecar, not
// from the service, or a failure of the service; keepPapoErrors has
// logged it.
var errSidecarAnswer = errors.New("the sidecar answered an error of its own")

// maxErrorBody bounds the error answers keepPapoErrors reads: papo's are
// a few hundred bytes.
const maxErrorBody = 16 << 10

// keepPapoErrors passes on a service's answer, with the gateway's request
// id alone. An error not in papo's error shape was made by a sidecar
// (daprd's {"errorCode","message"}, whose message names addresses and
// URLs), and a 5xx other than 503 is a failing service: both are logged
// and answered 503 unavailable instead. A 503 of the service's own keeps
// its code and gets a Retry-After if it had none.
func keepPapoErrors(resp *http.Response, appID string, log *slog.Logger) error {
	// The gateway set the request id already; the service echoes it.
	resp.Header.Del(httpapi.RequestIDHeader)
	if resp.StatusCode < 400 {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	var eb httpapi.ErrorBody
	papo := len(body) <= maxErrorBody && json.Unmarshal(body, &eb) == nil && eb.Error.Code != ""
	if papo && (resp.StatusCode < 500 || resp.StatusCode == http.StatusServiceUnavailable) {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			resp.Header.Set("Retry-After", "1")
		}
		return nil
	}
	msg := "the sidecar answered an error of its own"
	if papo {
		msg = "the service failed"
	}
	log.WarnContext(resp.Request.Context(), msg, "app_id", appID,
		"status", resp.StatusCode, "body", string(body[:min(len(body), 512)]),
		"request_id", httpapi.RequestID(resp.Request.Context()))
	return errSidecarAnswer
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
