// Package invoke calls other papo services through Dapr service
// invocation over the sidecar's HTTP API, keeping HTTP status codes and
// papo's error bodies intact end to end.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/telemetry"
)

// Client invokes methods on other app-ids through the local sidecar.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a Client for the sidecar whose HTTP API listens on
// 127.0.0.1:daprHTTPPort; every call carries apiToken, the sidecar's
// Dapr API token.
func New(daprHTTPPort, apiToken string) *Client {
	return &Client{
		base:  "http://127.0.0.1:" + daprHTTPPort,
		token: apiToken,
		hc: &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
}

// URL returns the sidecar URL that invokes path on appID.
func (c *Client) URL(appID, path string) string {
	return c.base + "/v1.0/invoke/" + appID + "/method/" + strings.TrimPrefix(path, "/")
}

// AddToken sets the sidecar's API token on h, for requests to a URL made
// with URL that do not go through Do (the gateway's proxy).
func (c *Client) AddToken(h http.Header) {
	if c.token != "" {
		h.Set(sidecar.APITokenHeader, c.token)
	}
}

// Do sends a JSON request to appID and decodes a JSON answer into out
// (when out is not nil). An error answer comes back as the *apierror.Error
// the callee wrote, so callers can pass it on unchanged.
func (c *Client) Do(ctx context.Context, appID, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request to %s %s: %w", appID, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL(appID, path), body)
	if err != nil {
		return fmt.Errorf("build request to %s %s: %w", appID, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.AddToken(req.Header)
	if id := httpapi.RequestID(ctx); id != "" && req.Header.Get(httpapi.RequestIDHeader) == "" {
		req.Header.Set(httpapi.RequestIDHeader, id)
	}
	// The callee (and daprd between) continue the caller's trace.
	telemetry.Inject(ctx, req.Header)
	resp, err := c.hc.Do(req)
	if err != nil {
		// err names the sidecar's URL; this message may reach a client.
		return apierror.New(apierror.Unavailable, "unavailable", "the %s service is %s", appID, sidecar.Reason(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(appID, resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", appID, path, err)
	}
	return nil
}

// decodeError rebuilds the callee's *apierror.Error from its answer.
func decodeError(appID string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb httpapi.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
		kind := httpapi.KindOf(resp.StatusCode)
		if kind == apierror.Internal {
			return fmt.Errorf("%s answered %d: %s", appID, resp.StatusCode, eb.Error.Message)
		}
		return apierror.New(kind, eb.Error.Code, "%s", eb.Error.Message)
	}
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusGatewayTimeout {
		return apierror.New(apierror.Unavailable, "unavailable", "the %s service is unavailable (%d)", appID, resp.StatusCode)
	}
	return fmt.Errorf("%s answered %d: %s", appID, resp.StatusCode, strings.TrimSpace(string(b)))
}
