package room

import (
	"context"
	"fmt"

	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
)

// Submit checks a send from the REST API and stores it (seq 0 when the
// store could not be reached and it went to messages.submitted instead,
// to be stored when a replica can).
func (s *Service) Submit(ctx context.Context, sub events.Submission) (seq int64, err error) {
	// As over the WebSocket, a client_id is required: without one a send
	// cannot be retried safely, nor matched to its event.
	if err := validate.ClientID(sub.ClientID, true); err != nil {
		return 0, err
	}
	if err := checkSubmission(sub); err != nil {
		return 0, err
	}
	if _, err := s.access(ctx, sub.SenderID, sub.RoomID); err != nil {
		return 0, err
	}
	// Stored in this replica's next round, like a submission ws hands
	// over; the answer says its seq, or why it was refused.
	outs, err := s.writer.submit(ctx, []events.Submission{sub}, false)
	if err == nil {
		if o := outs[0]; o.Code != "" {
			return 0, refusalError(o)
		}
		return outs[0].Seq, nil
	}
	// The store did not answer: the broker keeps the submission until a
	// replica can store it (announced on room.events then, as any).
	s.log.WarnContext(ctx, "store a REST send; publishing it instead", "room_id", sub.RoomID, "err", err)
	if err := s.pub.Publish(ctx, events.TopicSubmitted, events.SubmissionBatch{Submissions: []events.Submission{sub}}); err != nil {
		return 0, fmt.Errorf("publish submission to %s: %w", sub.RoomID, err)
	}
	return 0, nil
}

// refusalError is the client error of a refused outcome.
func refusalError(o Outcome) error {
	kind := apierror.Invalid
	switch o.Code {
	case errNotMember.Code:
		kind = apierror.Forbidden
	case errRoomNotFound.Code:
		kind = apierror.NotFound
	case "not_sender":
		kind = apierror.Forbidden
	}
	return apierror.New(kind, o.Code, "%s", o.Message)
}

func eventID(roomID string, seq int64) string { return fmt.Sprintf("%s-%d", roomID, seq) }
