package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/dapr/go-sdk/service/common"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/services/message/internal/room"
)

// Subscribe registers the consumer of messages.submitted on a Dapr service
// (competing consumers: component events.PubSub).
func Subscribe(svc common.Service, rooms *room.Service, log *slog.Logger) error {
	sub := &common.Subscription{PubsubName: events.PubSub, Topic: events.TopicSubmitted, Route: SubmittedRoute}
	return svc.AddTopicEventHandler(sub, SubmittedHandler(rooms, log))
}

// SubmittedHandler consumes one messages.submitted delivery. It asks for a
// retry only for transient errors; a payload that is not a SubmissionBatch
// is dead-lettered and acknowledged, since redelivering it cannot help.
func SubmittedHandler(rooms *room.Service, log *slog.Logger) common.TopicEventHandler {
	return func(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
		batch, err := decodeBatch(e.RawData)
		if err != nil {
			log.WarnContext(ctx, "malformed submission batch", "event_id", e.ID, "err", err)
			if err := rooms.DeadLetterRaw(ctx, e.RawData, err); err != nil {
				return true, err
			}
			return false, nil
		}
		if err := rooms.Consume(ctx, batch); err != nil {
			log.WarnContext(ctx, "submission batch will be redelivered", "event_id", e.ID, "err", err)
			return true, err
		}
		return false, nil
	}
}

// decodeBatch decodes a SubmissionBatch, also when a publisher sent it as
// text (Dapr then carries the JSON as a JSON string).
func decodeBatch(raw []byte) (events.SubmissionBatch, error) {
	var batch events.SubmissionBatch
	err := json.Unmarshal(raw, &batch)
	if err != nil {
		var text string
		if json.Unmarshal(raw, &text) == nil {
			err = json.Unmarshal([]byte(text), &batch)
		}
	}
	if err == nil && len(batch.Submissions) == 0 {
		err = errors.New("batch holds no submissions")
	}
	return batch, err
}
