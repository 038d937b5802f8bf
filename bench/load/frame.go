package load

import "encoding/json"

// frame holds the fields of a server frame the load client reads; the
// rest of each frame is skipped by the decoder.
type frame struct {
	Type     string `json:"type"`
	ClientID string `json:"client_id"`
	Seq      int64  `json:"seq"`
	Code     string `json:"code"`
	Ref      string `json:"ref"`
	Event    struct {
		Type   string `json:"type"`
		RoomID string `json:"room_id"`
		Seq    int64  `json:"seq"`
		Text   string `json:"text"`
	} `json:"event"`
}

func (f *frame) decode(b []byte) error { return json.Unmarshal(b, f) }
