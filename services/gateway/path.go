package main

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/platform/apierror"
)

// errInvalidPath answers a request path the gateway will not route.
func errInvalidPath(reason string) error {
	return apierror.Invalidf("invalid_path", "the request path %s", reason)
}

// encodedForbidden are percent-encodings a papo path never needs and that
// would hide a separator, a dot segment, a second round of decoding or a
// NUL from a check on the decoded path: daprd, the services' routers and
// whatever sits between may each decode once more.
var encodedForbidden = []string{"%2e", "%2f", "%5c", "%25", "%00"}

// checkPath accepts a request path (as sent, percent-encoded) only if it
// is already what cleaning would make of it: absolute, without "." or
// ".." segments, empty segments ("//") or a trailing slash, and without
// backslashes, control characters, invalid UTF-8 or the encodings in
// encodedForbidden. Such a path means the same to every hop behind the
// gateway, so the route the gateway matched is the route the service
// serves — the sidecar resolves "/api/v1/rooms/../../v1.0/shutdown" to
// its own API otherwise.
func checkPath(escaped string) error {
	if escaped == "" || escaped[0] != '/' {
		return errInvalidPath("must start with /")
	}
	lower := strings.ToLower(escaped)
	for _, enc := range encodedForbidden {
		if strings.Contains(lower, enc) {
			return errInvalidPath(fmt.Sprintf("holds the encoding %s", enc))
		}
	}
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		return errInvalidPath("holds a malformed %-encoding")
	}
	if !utf8.ValidString(decoded) {
		return errInvalidPath("is not valid UTF-8")
	}
	for _, r := range decoded {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return errInvalidPath("holds a control character or a backslash")
		}
	}
	if path.Clean(decoded) != decoded || path.Clean(escaped) != escaped {
		return errInvalidPath("has . or .. segments, an empty segment or a trailing slash")
	}
	return nil
}

// cleanPaths refuses, with 400 invalid_path, every request whose path
// checkPath does not accept, before any route (and so any upstream) sees
// it.
func cleanPaths(writeErr func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := checkPath(r.URL.EscapedPath()); err != nil {
				writeErr(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// upstreamPath builds the path a proxied request is sent to from the route
// chi matched, not from the client's text: the route's pattern with each
// {parameter} and the trailing * filled in from the matched values, every
// segment unescaped, checked and escaped again. A value that is empty, a
// dot segment, or holds a slash or a control character is refused, so the
// upstream path always stays under the route's own prefix.
func upstreamPath(r *http.Request) (string, error) {
	rc := chi.RouteContext(r.Context())
	if rc == nil {
		return "", errInvalidPath("matched no route")
	}
	pattern := rc.RoutePattern()
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		switch {
		case seg == "*":
			rest := strings.Split(rc.URLParam("*"), "/")
			for j, part := range rest {
				s, err := segment(part)
				if err != nil {
					return "", err
				}
				rest[j] = s
			}
			segs[i] = strings.Join(rest, "/")
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
			name, _, _ := strings.Cut(seg[1:len(seg)-1], ":") // {id:regexp}
			s, err := segment(rc.URLParam(name))
			if err != nil {
				return "", err
			}
			segs[i] = s
		}
	}
	return strings.Join(segs, "/"), nil
}

// segment re-escapes one path segment a route matched, refusing what
// could leave the route's prefix.
func segment(raw string) (string, error) {
	s, err := url.PathUnescape(raw)
	if err != nil {
		return "", errInvalidPath("holds a malformed %-encoding")
	}
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\") {
		return "", errInvalidPath("has an empty, dot or slashed segment")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", errInvalidPath("holds a control character")
		}
	}
	return url.PathEscape(s), nil
}
