package events

import (
	"maps"
	"testing"
)

func TestPublishMetadataNamesTheRoomOfKeyedPayloads(t *testing.T) {
	sub := func(room string) Submission { return Submission{RoomID: room} }
	for _, tc := range []struct {
		name    string
		payload any
		want    map[string]string
	}{
		{"submissions of one room", SubmissionBatch{Submissions: []Submission{sub("r1"), sub("r1")}}, map[string]string{"partitionKey": "r1"}},
		{"submissions of two rooms have no key", SubmissionBatch{Submissions: []Submission{sub("r1"), sub("r2")}}, nil},
		{"no submissions, no key", SubmissionBatch{}, nil},
		{"room events", RoomEventBatch{RoomID: "r1"}, map[string]string{"partitionKey": "r1"}},
		{"room events without a room", RoomEventBatch{}, nil},
		{"a payload that is not keyed", SignalBatch{Signals: []Signal{{RoomID: "r1"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PublishMetadata(tc.payload); !maps.Equal(got, tc.want) {
				t.Fatalf("PublishMetadata = %v, want %v", got, tc.want)
			}
		})
	}
}
