package load

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/papochat/papo/api"
)

// TestFrameDecodeReadsWhatTheServerWrites: the scanner finds the fields in
// frames encoded as the ws service encodes them.
func TestFrameDecodeReadsWhatTheServerWrites(t *testing.T) {
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ev := api.Event{RoomID: "r_1", Seq: 42, Type: api.EventMessage, ID: "r_1-42", SenderID: "u1", ClientID: "tag-7",
		Text: "7 1733550000000000000 xxxx", CreatedAt: time.Now()}
	var f frame
	if err := f.decode(enc(api.EventFrame{Type: api.FrameEvent, Event: ev})); err != nil {
		t.Fatal(err)
	}
	if f.Type != "event" || f.Event.Type != "message" || f.Event.RoomID != "r_1" || f.Event.Seq != 42 || f.Event.Text != ev.Text {
		t.Fatalf("event: %+v", f)
	}
	f = frame{}
	_ = f.decode(enc(api.AckFrame{Type: api.FrameAck, ClientID: "tag-7", RoomID: "r_1", Seq: 42}))
	if f.Type != "ack" || f.ClientID != "tag-7" || f.Seq != 42 {
		t.Fatalf("ack: %+v", f)
	}
	f = frame{}
	_ = f.decode([]byte(`{"type":"error","code":"server_busy","message":"x","ref":"tag-9"}`))
	if f.Type != "error" || f.Code != "server_busy" || f.Ref != "tag-9" {
		t.Fatalf("error: %+v", f)
	}
}
