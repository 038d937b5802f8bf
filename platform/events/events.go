// Package events names the pub/sub components and topics papo's services
// share, and the payloads that cross them. These are internal to the
// system (clients never see them); the public shapes are in package api.
package events

import (
	"time"

	"github.com/papochat/papo/api"
)

// Pub/sub component names. Every profile under components/ defines both.
const (
	// PubSub is the competing-consumer component: the replicas of one
	// app-id share each message (message, notification).
	PubSub = "pubsub"
	// Fanout is the per-replica component: every ws replica is its own
	// consumer and receives every message.
	Fanout = "fanout"
)

// Topics.
const (
	// TopicSubmitted carries SubmissionBatch from ws (and the REST send)
	// to the message service.
	TopicSubmitted = "messages.submitted"
	// TopicRoomEvents carries RoomEventBatch from the message service to
	// every ws replica (through Fanout) and to notification (through PubSub).
	TopicRoomEvents = "room.events"
	// TopicSignals carries ephemeral Signal batches (typing, presence,
	// session revocation) to every ws replica; nothing on it is persisted.
	TopicSignals = "room.signals"
	// TopicDeadLetter receives submissions that can never be stored.
	TopicDeadLetter = "messages.deadletter"
	// TopicSessions carries SessionRevoked notices from auth to every
	// replica of every service (each through Fanout), so revoked sessions
	// are refused everywhere before their tokens expire.
	TopicSessions = "sessions.revoked"
	// TopicNotificationsDeadLetter receives room event batches the
	// notification service failed on after every retry, and pushes it
	// could not deliver.
	TopicNotificationsDeadLetter = "notifications.deadletter"
	// TopicDevicesChanged carries DevicesChanged notices between the
	// notification service's replicas (each through Fanout), so every
	// replica learns at once that a user gained a first device or lost
	// the last one.
	TopicDevicesChanged = "devices.changed"
)

// AllTopics lists every topic, for brokers whose streams must exist before
// the sidecars start (NATS JetStream).
var AllTopics = []string{TopicSubmitted, TopicRoomEvents, TopicSignals, TopicDeadLetter, TopicSessions, TopicNotificationsDeadLetter, TopicDevicesChanged}

// Submission is one client request to change a room's log.
type Submission struct {
	Type      string        `json:"type"` // api.EventMessage, api.EventEdit or api.EventDelete
	RoomID    string        `json:"room_id"`
	SenderID  string        `json:"sender_id"`
	ClientID  string        `json:"client_id"`
	Text      string        `json:"text,omitempty"`
	E2EE      *api.Envelope `json:"e2ee,omitempty"`
	TargetSeq int64         `json:"target_seq,omitempty"`
	SentAt    time.Time     `json:"sent_at"`
}

// SubmissionBatch is the payload of TopicSubmitted: several submissions,
// possibly for several rooms, published as one pub/sub message. It is
// also the body of the message service's POST /internal/v1/submissions,
// the direct way ws hands submissions over (SubmitRoute).
type SubmissionBatch struct {
	Submissions []Submission `json:"submissions"`
}

// PartitionKey is the room of a batch whose submissions are all of one
// room, and "" otherwise: publishers send it as the partitionKey metadata
// (PartitionKeyMetadata), so a room's submissions keep their order
// through a broker that splits a topic into partitions.
func (b SubmissionBatch) PartitionKey() string {
	if len(b.Submissions) == 0 {
		return ""
	}
	room := b.Submissions[0].RoomID
	for _, s := range b.Submissions[1:] {
		if s.RoomID != room {
			return ""
		}
	}
	return room
}

// PartitionKeyMetadata is the pub/sub metadata that names a message's
// partition key. Dapr 1.14's Kafka component makes it the record's key,
// and Kafka's default partitioner puts one key in one partition, which
// one consumer of a group reads in order; without a key each record goes
// to a partition at random and a room's messages may overtake each
// other. Brokers that keep one order per topic (NATS JetStream, Redis
// Streams, RabbitMQ) ignore it.
const PartitionKeyMetadata = "partitionKey"

// Keyed is a payload whose order matters among payloads of the same key.
type Keyed interface {
	PartitionKey() string
}

// PublishMetadata is the metadata to publish payload with: its partition
// key when it is Keyed and has one, else nil.
func PublishMetadata(payload any) map[string]string {
	if k, ok := payload.(Keyed); ok {
		if key := k.PartitionKey(); key != "" {
			return map[string]string{PartitionKeyMetadata: key}
		}
	}
	return nil
}

// SubmitRoute is the message service's route that appends a
// SubmissionBatch and answers a SubmitResult once every submission of it
// is stored or refused (service invocation, app-id "message").
const SubmitRoute = "/internal/v1/submissions"

// Outcome is what became of one submission: stored at Seq (by this
// request, or earlier under the same client_id), or refused with Code and
// Message (the codes of docs/protocol.md's error frames).
type Outcome struct {
	Seq     int64  `json:"seq,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// SubmitResult answers SubmitRoute: one Outcome per submission, in order.
type SubmitResult struct {
	Outcomes []Outcome `json:"outcomes"`
}

// Ack re-announces the seq of a submission that was already persisted (a
// redelivery or a client retry), so the sender is acked without a new event.
type Ack struct {
	RoomID   string `json:"room_id"`
	SenderID string `json:"sender_id"`
	ClientID string `json:"client_id"`
	Seq      int64  `json:"seq"`
}

// Rejection tells a sender why a submission was refused.
type Rejection struct {
	RoomID   string `json:"room_id"`
	SenderID string `json:"sender_id"`
	ClientID string `json:"client_id"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// RoomEventBatch is the payload of TopicRoomEvents: persisted events,
// plus acks and rejections for senders, of one room or of several (one
// batch per commit round of the message service). Every event, ack and
// rejection carries its own room id, and a consumer groups by it; RoomID
// is set only when the whole batch is one room's, and may be empty. Within
// a room, events are in seq order: the batch's new ones, preceded by
// events announced before whose first announcement may have been lost
// (the stored events of submissions that arrived again, and the room's
// previous change when it was a membership change), so a consumer must
// skip seqs it already has.
type RoomEventBatch struct {
	RoomID     string      `json:"room_id"`
	Events     []api.Event `json:"events,omitempty"`
	Acks       []Ack       `json:"acks,omitempty"`
	Rejections []Rejection `json:"rejections,omitempty"`
	// TraceParent is the W3C trace context of the round that stored the
	// batch, so each ws replica's delivery joins the sender's trace. It
	// travels in the payload because the SDK's streaming subscriptions
	// drop the CloudEvent's own traceparent (go-sdk 1.11 Receive).
	TraceParent string `json:"traceparent,omitempty"`
}

// PartitionKey is the batch's room: announcements of one room keep their
// order through a partitioned topic (see PartitionKeyMetadata).
func (b RoomEventBatch) PartitionKey() string { return b.RoomID }

// Signal kinds.
const (
	SignalTyping         = "typing"
	SignalPresence       = "presence"
	SignalSessionRevoked = "session_revoked"
)

// Signal is an ephemeral notice for ws replicas.
type Signal struct {
	Kind   string `json:"kind"`
	RoomID string `json:"room_id,omitempty"` // typing
	UserID string `json:"user_id,omitempty"`
	// Presence: the new status and last seen, and the rooms the user is in,
	// so each replica tells its connections that share one of them.
	Status   string     `json:"status,omitempty"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	RoomIDs  []string   `json:"room_ids,omitempty"`
	// SessionID is set for SignalSessionRevoked.
	SessionID string `json:"session_id,omitempty"`
}

// SignalBatch is the payload of TopicSignals.
type SignalBatch struct {
	Signals []Signal `json:"signals"`
}

// SessionRevoked is the payload of TopicSessions.
type SessionRevoked struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	RevokedAt time.Time `json:"revoked_at"`
	// Until is when the session's last access token expires; after it the
	// notice no longer matters.
	Until time.Time `json:"until"`
}

// DevicesChanged is the payload of TopicDevicesChanged: the notification
// service's index of users with devices changed in one shard, now at
// Version; UserID is the user whose entry changed.
type DevicesChanged struct {
	UserID  string `json:"user_id"`
	Shard   int    `json:"shard"`
	Version int64  `json:"version"`
}
