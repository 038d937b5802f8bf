// Package apierror is the one error type papo's services return to clients.
//
// An Error carries a Kind, which decides the HTTP status (see httpapi), and a
// stable snake_case Code that clients match on. Anything that is not an
// *Error is an internal fault: logged by the server, never shown to a client.
package apierror

import (
	"errors"
	"fmt"
	"time"

	"github.com/papochat/papo/api/validate"
)

// Kind classifies an error; httpapi maps each Kind to one HTTP status.
type Kind int

// The kinds of error a client can see.
const (
	Internal        Kind = iota // 500: a fault of ours; the message is not shown.
	Invalid                     // 400: the request is malformed or breaks a rule.
	Unauthenticated             // 401: no or bad credentials.
	Forbidden                   // 403: authenticated but not allowed.
	NotFound                    // 404
	Conflict                    // 409
	TooLarge                    // 413
	RateLimited                 // 429; RetryAfter says when to come back.
	Unavailable                 // 503: a dependency does not answer; Retry-After says when to retry.
)

// Error is a client-facing error.
type Error struct {
	Kind    Kind
	Code    string // stable snake_case code, e.g. "username_taken"
	Message string // human text
	// RetryAfter is set on RateLimited errors, and may be on Unavailable
	// ones (which say 1 s otherwise).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New returns an *Error of the given kind and code.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalidf returns an Invalid error with the given code.
func Invalidf(code, format string, args ...any) *Error {
	return New(Invalid, code, format, args...)
}

// As returns the *Error in err's chain, if any. A rule of the contract
// broken (*validate.Error) is an Invalid error with the rule's code, so
// whatever returns one answers 400 with that code.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	var v *validate.Error
	if errors.As(err, &v) {
		return &Error{Kind: Invalid, Code: v.Code, Message: v.Message}, true
	}
	return nil, false
}

// KindOf returns the Kind of err: Internal for anything that is not an *Error.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return Internal
}

// CodeOf returns the Code of err, or "internal" for anything that is not an *Error.
func CodeOf(err error) string {
	if e, ok := As(err); ok {
		return e.Code
	}
	return "internal"
}
