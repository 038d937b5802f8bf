// Package httpapi holds the HTTP plumbing every papo service shares: JSON
// encoding and decoding with size limits, the one mapping from
// apierror.Kind to HTTP status, request ids, access logs and health routes.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
)

// DefaultMaxBody is the request body limit when a handler names none.
const DefaultMaxBody = 64 << 10

// Encode writes v as JSON with the given status.
// The body is encoded before the header is written, so the answer carries
// its Content-Length: a body over net/http's 2 KiB buffer would otherwise be
// chunked, and a reverse proxy (the gateway's, a sidecar's) flushes each
// chunk of an answer of unknown length as it comes.
func Encode(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		// A handler may have chosen a more precise JSON type (a JWK Set).
		w.Header().Set("Content-Type", "application/json")
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Only the services' own response types are encoded; they always
		// marshal. Say so rather than send half a body (an ErrorBody
		// always marshals).
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: ErrorDetail{Code: "internal", Message: "the response could not be encoded"}})
	}
	b = append(b, '\n')
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Decode reads one JSON object of at most maxBytes from r's body into v.
// Unknown fields are allowed (clients may be newer than the server); a body
// over the limit is a TooLarge error, malformed JSON an Invalid one.
//
// Decoding is strict where encoding/json is lenient: a string holding
// invalid UTF-8 or an escaped lone surrogate is refused (validate.JSON)
// with its field's code (invalid_text, invalid_client_id, invalid_name,
// …; invalid_json elsewhere), never rewritten to U+FFFD, so two different
// client_ids cannot decode to one idempotency key.
func Decode(w http.ResponseWriter, r *http.Request, maxBytes int64, v any) error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBytes)
		}
		return apierror.Invalidf("invalid_json", "request body could not be read: %v", err)
	}
	return DecodeBytes(body, v)
}

// DecodeBytes is Decode of a body already read: exactly one JSON value,
// with the strict string rules of Decode.
func DecodeBytes(body []byte, v any) error {
	if err := validate.JSON(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return apierror.Invalidf("invalid_json", "request body is empty")
		}
		return apierror.Invalidf("invalid_json", "request body is not valid JSON: %v", err)
	}
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return apierror.Invalidf("invalid_json", "request body holds more than one JSON value")
	}
	return nil
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Status maps an error kind to its HTTP status. It is the only place that
// does.
func Status(k apierror.Kind) int {
	switch k {
	case apierror.Invalid:
		return http.StatusBadRequest
	case apierror.Unauthenticated:
		return http.StatusUnauthorized
	case apierror.Forbidden:
		return http.StatusForbidden
	case apierror.NotFound:
		return http.StatusNotFound
	case apierror.Conflict:
		return http.StatusConflict
	case apierror.TooLarge:
		return http.StatusRequestEntityTooLarge
	case apierror.RateLimited:
		return http.StatusTooManyRequests
	case apierror.Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Error writes err as an error response. Internal errors are logged and
// answered with a generic message, so no detail of a fault leaks.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e, ok := apierror.As(err)
	if !ok {
		log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path,
			"request_id", RequestID(r.Context()), "err", err)
		e = apierror.New(apierror.Internal, "internal", "internal error")
	}
	// A rate limit says when to come back; an unavailable dependency
	// says "soon" (1 s) unless it knows better.
	if (e.Kind == apierror.RateLimited && e.RetryAfter > 0) || e.Kind == apierror.Unavailable {
		secs := int(e.RetryAfter.Seconds() + 0.999)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	if e.Kind == apierror.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer`)
	}
	Encode(w, Status(e.Kind), ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message}})
}

// HandlerFunc is an http handler that returns an error; Handle adapts it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle turns a HandlerFunc into an http.Handler that writes returned errors
// with Error.
func Handle(log *slog.Logger, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			Error(w, r, log, err)
		}
	})
}

// KindOf maps an HTTP status back to an error kind, for errors that come
// back from another service.
func KindOf(status int) apierror.Kind {
	switch status {
	case http.StatusBadRequest:
		return apierror.Invalid
	case http.StatusUnauthorized:
		return apierror.Unauthenticated
	case http.StatusForbidden:
		return apierror.Forbidden
	case http.StatusNotFound:
		return apierror.NotFound
	case http.StatusConflict:
		return apierror.Conflict
	case http.StatusRequestEntityTooLarge:
		return apierror.TooLarge
	case http.StatusTooManyRequests:
		return apierror.RateLimited
	case http.StatusServiceUnavailable:
		return apierror.Unavailable
	default:
		return apierror.Internal
	}
}

// NotFound answers a request no route matches: 404 not_found, with the
// error body every other failure has.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Encode(w, http.StatusNotFound, ErrorBody{Error: ErrorDetail{Code: "not_found", Message: "no such route: " + r.Method + " " + r.URL.Path}})
}

// MethodNotAllowed answers a route asked with a method it does not serve:
// 405 method_not_allowed, with the error body.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	Encode(w, http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path}})
}
