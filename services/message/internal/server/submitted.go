package server

import (
	"context"
	"errors"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/services/message/internal/room"
)

// Submitted is the subscription to messages.submitted (competing
// consumers: component events.PubSub), delivered at SubmittedRoute. A
// transient error asks for a redelivery; a payload that is not a
// SubmissionBatch is dead-lettered and acknowledged, since redelivering
// it cannot help (pubsub.Outcome).
func Submitted(rooms *room.Service) pubsub.Subscription {
	return pubsub.Subscribe(events.PubSub, events.TopicSubmitted, SubmittedRoute,
		func(ctx context.Context, batch events.SubmissionBatch) error {
			if len(batch.Submissions) == 0 {
				return pubsub.Malformed(errors.New("batch holds no submissions"))
			}
			return rooms.Consume(ctx, batch)
		},
		pubsub.WithMalformed(rooms.DeadLetterRaw))
}
