// Package pubsub is papo's one adapter to Dapr pub/sub: a typed publish
// (Publisher, Topic), delivered subscriptions the sidecar posts to the app
// (Subscribe, Mount: /dapr/subscribe and the delivery routes), and
// streaming subscriptions the app opens itself and keeps open (Stream).
//
// Every way of receiving hands the payload to a Handler and settles the
// message by one rule (Outcome):
//
//   - the handler returned nil: ack (SUCCESS);
//   - the payload does not decode, or the handler returned an error
//     wrapped with Malformed: drop (DROP). Redelivering a payload that
//     can never be processed only blocks the ones behind it. A delivered
//     subscription that keeps such payloads says so with WithMalformed
//     (the message service dead-letters them itself), and the message is
//     acknowledged once kept;
//   - any other error: retry (RETRY). The sidecar redelivers by its
//     resiliency policy and, after the last attempt, to the
//     subscription's dead-letter topic when it has one.
//
// It may depend on api and platform only.
package pubsub

import (
	"context"
	"errors"
	"fmt"

	json "github.com/goccy/go-json"
)

// Status is how a delivered message is settled, in Dapr's words.
type Status string

// The three answers to a delivery.
const (
	Ack   Status = "SUCCESS"
	Retry Status = "RETRY"
	Drop  Status = "DROP"
)

// ErrMalformed marks a payload that no redelivery can make processable.
var ErrMalformed = errors.New("malformed payload")

// Malformed wraps err so that Outcome drops the message.
func Malformed(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// Outcome is the one rule deciding what becomes of a message whose
// handler returned err (see the package documentation).
func Outcome(err error) Status {
	switch {
	case err == nil:
		return Ack
	case errors.Is(err, ErrMalformed):
		return Drop
	default:
		return Retry
	}
}

// Handler consumes one decoded payload. Its error settles the message
// (Outcome).
type Handler[T any] func(ctx context.Context, v T) error

// Decode decodes a JSON payload into a T. A publisher that sent its JSON
// as text has it carried as a JSON string; that is decoded too. The
// error wraps ErrMalformed.
func Decode[T any](data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	if err != nil && len(data) > 0 && data[0] == '"' {
		var text string
		if json.Unmarshal(data, &text) == nil {
			v = *new(T)
			err = json.Unmarshal([]byte(text), &v)
		}
	}
	if err != nil {
		return v, Malformed(fmt.Errorf("decode %T: %w", v, err))
	}
	return v, nil
}

// JSON adapts a typed handler to raw payloads: the payload is decoded
// (Decode) and handed to h.
func JSON[T any](h Handler[T]) func(ctx context.Context, data []byte) error {
	return func(ctx context.Context, data []byte) error {
		v, err := Decode[T](data)
		if err != nil {
			return err
		}
		return h(ctx, v)
	}
}
