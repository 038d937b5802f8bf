package hub

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/papochat/papo/platform/apierror"
)

// FuzzDecodeFrame checks WebSocket frame decoding: whatever the bytes,
// decodeFrame never panics, refuses with a client-facing code, and a
// frame it accepts holds exactly the characters sent: valid UTF-8, and
// no U+FFFD the frame did not spell itself (encoding/json would have
// made one of invalid bytes or a lone surrogate).
func FuzzDecodeFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"send","room_id":"r1","client_id":"c1","text":"hello"}`,
		`{"type":"edit","room_id":"r1","client_id":"c2","text":"x","target_seq":3}`,
		`{"type":"resume","rooms":{"r1":41,"r2":7}}`,
		`{"type":"read","room_id":"r1","seq":5}`,
		`{"type":"auth","token":"a.b.c"}`,
		`{"type":"send","room_id":"r1","client_id":"c","text":"\ud83d\ude00"}`,
		`{"type":"send","room_id":"r1","client_id":"c","text":"\ud800"}`,
		"{\"type\":\"send\",\"room_id\":\"r1\",\"client_id\":\"a\xffb\",\"text\":\"x\"}",
		`{"type":"send","text":"\ufffd"}`,
		`{"type":`,
		`[1,2]`,
		`"just a string"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeFrame(data)
		if err != nil {
			if e, ok := apierror.As(err); !ok || e.Kind != apierror.Invalid || e.Code == "" {
				t.Fatalf("refusal %v is not a client error with a code", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted %q, which is not valid JSON", data)
		}
		spelled := bytes.Contains(data, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`))
		strs := []string{fr.Type, fr.RoomID, fr.ClientID, fr.Text, fr.Token}
		for id := range fr.Rooms {
			strs = append(strs, id)
		}
		for _, s := range strs {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted %q holding invalid UTF-8 %q", data, s)
			}
			if strings.ContainsRune(s, utf8.RuneError) && !spelled {
				t.Fatalf("accepted %q and rewrote a string to %q", data, s)
			}
		}
	})
}
