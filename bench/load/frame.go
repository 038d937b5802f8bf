package load

import (
	"bytes"
	"strconv"
)

// frame holds the fields of a server frame the load client reads. The
// load client reads tens of thousands of frames a second on the machine
// it measures, so it does not decode JSON: it picks the few fields it
// needs out of the frames the server writes (docs/protocol.md), whose
// field order and escaping it relies on: "type" first, and the texts and
// ids it sent itself, which need no escaping.
type frame struct {
	Type     string
	ClientID string
	Seq      int64
	Code     string
	Ref      string
	Event    struct {
		Type   string
		RoomID string
		Seq    int64
		Text   string
	}
}

var (
	keyType     = []byte(`"type":"`)
	keyEvent    = []byte(`"event":{`)
	keyRoomID   = []byte(`"room_id":"`)
	keySeq      = []byte(`"seq":`)
	keyText     = []byte(`"text":"`)
	keyClientID = []byte(`"client_id":"`)
	keyCode     = []byte(`"code":"`)
	keyRef      = []byte(`"ref":"`)
)

func (f *frame) decode(b []byte) error {
	f.Type = stringField(b, keyType)
	switch f.Type {
	case "event":
		i := bytes.Index(b, keyEvent)
		if i < 0 {
			return nil
		}
		ev := b[i+len(keyEvent):]
		f.Event.Type = stringField(ev, keyType)
		f.Event.RoomID = stringField(ev, keyRoomID)
		f.Event.Seq = intField(ev, keySeq)
		f.Event.Text = stringField(ev, keyText)
	case "ack":
		f.ClientID = stringField(b, keyClientID)
		f.Seq = intField(b, keySeq)
	case "error":
		f.Code = stringField(b, keyCode)
		f.Ref = stringField(b, keyRef)
	}
	return nil
}

// stringField returns the string after key, up to its closing quote.
func stringField(b, key []byte) string {
	i := bytes.Index(b, key)
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// intField returns the integer after key.
func intField(b, key []byte) int64 {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0
	}
	rest := b[i+len(key):]
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '-') {
		j++
	}
	n, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n
}
