package push

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

// DaprBinding is the Binding of a Dapr output binding component.
type DaprBinding struct {
	client dapr.Client
	name   string
}

// NewDaprBinding returns the Binding for the component named name.
func NewDaprBinding(client dapr.Client, name string) *DaprBinding {
	return &DaprBinding{client: client, name: name}
}

// Invoke implements Binding.
func (b *DaprBinding) Invoke(ctx context.Context, req Request) (Response, error) {
	ev, err := b.client.InvokeBinding(ctx, &dapr.InvokeBindingRequest{
		Name: b.name, Operation: req.Operation, Data: req.Data, Metadata: req.Metadata,
	})
	if err != nil {
		return Response{}, fmt.Errorf("binding %s: %w", b.name, err)
	}
	if ev == nil {
		return Response{}, nil
	}
	return Response{Data: ev.Data, Metadata: ev.Metadata}, nil
}

// HTTPBinding behaves like Dapr's bindings.http component over a plain
// HTTP client, for tests and for running without a sidecar: the "path"
// metadata is appended to the base URL, metadata keys that start with a
// capital letter become request headers, and the status comes back in
// Metadata["statusCode"]; unless "errorIfNot2XX" is "false", a non-2xx
// status is also an error, as in bindings.http.
type HTTPBinding struct {
	base string
	hc   *http.Client
}

// NewHTTPBinding returns an HTTPBinding sending to base.
func NewHTTPBinding(base string) *HTTPBinding {
	return &HTTPBinding{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 10 * time.Second}}
}

// Invoke implements Binding.
func (b *HTTPBinding) Invoke(ctx context.Context, req Request) (Response, error) {
	u := b.base
	if p := req.Metadata["path"]; p != "" {
		u += "/" + strings.TrimLeft(p, "/")
	}
	method := strings.ToUpper(req.Operation)
	if method == "CREATE" {
		method = http.MethodPost
	}
	hr, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(req.Data))
	if err != nil {
		return Response{}, err
	}
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range req.Metadata {
		if k != "" && k[0] >= 'A' && k[0] <= 'Z' {
			hr.Header.Set(k, v)
		}
	}
	resp, err := b.hc.Do(hr)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Response{}, err
	}
	md := map[string]string{"statusCode": strconv.Itoa(resp.StatusCode), "status": resp.Status}
	for k, vs := range resp.Header {
		md[k] = strings.Join(vs, ", ")
	}
	out := Response{Data: data, Metadata: md}
	if req.Metadata["errorIfNot2XX"] != "false" && resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("received status code %d", resp.StatusCode)
	}
	return out, nil
}
