package main

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzCheckPath: a path checkPath accepts means the same to every hop
// behind the gateway. `go test` runs the seeds; `go test -fuzz
// FuzzCheckPath` searches further.
func FuzzCheckPath(f *testing.F) {
	for _, prefix := range proxiedPrefixes {
		f.Add(prefix)
		for _, trav := range traversals {
			f.Add(prefix + trav)
		}
	}
	for _, seed := range []string{
		"/", "", "api", "/api/v1/rooms/r%C3%A9sum%C3%A9", "/api/v1/rooms/%zz", "/api/v1/rooms/%",
		"/api/v1/rooms/a%2", "/a/%ff", "/a/\x00", "/a/\x7f", "/a;b/..;/c", "/..", "/.", "/a/.../b",
		"/a/%2e", "/a/%252F", "/a/%25252e%25252e", "/a/b%3f/../c", "/a/b#/../c",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil {
			return
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", p, err)
		}
		// Cleaning, before or after decoding, changes nothing.
		if path.Clean(p) != p || path.Clean(dec) != dec {
			t.Fatalf("accepted %q, which cleaning changes", p)
		}
		// No dot segment, separator or NUL hides behind a second round of
		// decoding either.
		dec2, err := url.PathUnescape(dec)
		if err != nil {
			dec2 = dec
		}
		for _, s := range []string{dec, dec2} {
			if path.Clean(s) != s || strings.ContainsAny(s, "\\\x00") {
				t.Fatalf("accepted %q, which reads as %q after decoding", p, s)
			}
		}
		// As daprd resolves it under its invoke prefix (CleanPathMiddleware
		// cleans the escaped path), it stays an invocation of the same app.
		const invoke = "/v1.0/invoke/message/method"
		for _, s := range []string{p, dec, dec2} {
			if got := path.Clean(invoke + s); got != invoke && !strings.HasPrefix(got, invoke+"/") {
				t.Fatalf("accepted %q, which the sidecar resolves to %q", p, got)
			}
		}
	})
}
