package main

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
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
			inv.AddToken(pr.Out.Header)
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

// wsProxy spreads WebSocket connections over the ws replicas round robin,
// after checking the access token at the edge. A replica that refuses a
// connection is skipped for a few seconds; the client's reconnect lands on
// another one. On Kubernetes the single upstream is the ws Service.
type wsProxy struct {
	upstreams []*wsUpstream
	next      atomic.Uint64
	verifier  authn.TokenVerifier
	log       *slog.Logger
}

type wsUpstream struct {
	url   *url.URL
	proxy *httputil.ReverseProxy

	mu        sync.Mutex
	downUntil time.Time
}

func (u *wsUpstream) down() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return time.Now().Before(u.downUntil)
}

func (u *wsUpstream) markDown(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.downUntil = time.Now().Add(d)
}

func newWSProxy(upstreams []string, appToken string, verifier authn.TokenVerifier, log *slog.Logger) (*wsProxy, error) {
	p := &wsProxy{verifier: verifier, log: log}
	for _, raw := range upstreams {
		target, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		u := &wsUpstream{url: target}
		u.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.URL.Path = "/ws"
				pr.Out.URL.RawPath = ""
				pr.SetXForwarded()
				pr.Out.Header.Set(httpapi.AppTokenHeader, appToken)
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				u.markDown(3 * time.Second)
				log.WarnContext(r.Context(), "ws upstream failed", "upstream", target.String(), "err", err)
				httpapi.Error(w, r, log, apierror.New(apierror.Unavailable, "unavailable", "no realtime server answered; retry"))
			},
		}
		p.upstreams = append(p.upstreams, u)
	}
	return p, nil
}

func (p *wsProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := authn.BearerToken(r)
	if token == "" {
		token = protocolToken(r)
	}
	if token == "" {
		httpapi.Error(w, r, p.log, apierror.New(apierror.Unauthenticated, "missing_token",
			"a token is required: Sec-WebSocket-Protocol %q, %q or an Authorization header", api.Subprotocol, api.BearerProtocolPref+"<token>"))
		return
	}
	if _, err := p.verifier.Verify(r.Context(), token); err != nil {
		httpapi.Error(w, r, p.log, err)
		return
	}
	n := len(p.upstreams)
	start := int(p.next.Add(1) % uint64(n))
	for i := range n {
		u := p.upstreams[(start+i)%n]
		if !u.down() || i == n-1 {
			u.proxy.ServeHTTP(w, r)
			return
		}
	}
}

// protocolToken returns the token a browser sends as a WebSocket
// subprotocol "bearer.<token>".
func protocolToken(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, api.BearerProtocolPref) {
				return strings.TrimPrefix(p, api.BearerProtocolPref)
			}
		}
	}
	return ""
}
