// Package publish provides Memory, the room.Publisher the message
// service's tests use: it records payloads in order. The service itself
// publishes through platform/pubsub.
package publish

import (
	"context"
	"fmt"
	"sync"

	json "github.com/goccy/go-json"
)

// Message is one payload a Memory publisher received, as JSON.
type Message struct {
	Topic string
	Data  []byte
}

// Memory records published payloads in order. Fail, when set, makes
// Publish fail with its error.
type Memory struct {
	mu   sync.Mutex
	msgs []Message
	fail error
}

// Publish implements room.Publisher.
func (m *Memory) Publish(_ context.Context, topic string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode payload for %s: %w", topic, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.msgs = append(m.msgs, Message{Topic: topic, Data: b})
	return nil
}

// SetFailure makes every later Publish fail with err (nil restores it).
func (m *Memory) SetFailure(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Messages returns the payloads published to topic so far.
func (m *Memory) Messages(topic string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	for _, msg := range m.msgs {
		if msg.Topic == topic {
			out = append(out, msg.Data)
		}
	}
	return out
}
