package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
)

// body is the shape of the REST bodies that carry client text.
type body struct {
	Text        string `json:"text"`
	ClientID    string `json:"client_id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	UserID      string `json:"user_id"`
}

func decodeBody(raw []byte) (body, error) {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(raw))
	var b body
	err := httpapi.Decode(httptest.NewRecorder(), r, 0, &b)
	return b, err
}

func TestDecodeRefusesWhatEncodingJSONWouldRewrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		code string
	}{
		{"invalid UTF-8 in text", "{\"text\":\"\xff\xfe\",\"client_id\":\"c\"}", "invalid_text"},
		{"lone surrogate in text", `{"text":"\ud800","client_id":"c"}`, "invalid_text"},
		{"invalid UTF-8 in client_id", "{\"text\":\"hi\",\"client_id\":\"a\xffb\"}", "invalid_client_id"},
		{"lone surrogate in client_id", `{"text":"hi","client_id":"a\udfffb"}`, "invalid_client_id"},
		{"invalid UTF-8 in a room name", "{\"name\":\"\xc0\xaf\"}", "invalid_name"},
		{"lone surrogate in a display name", `{"display_name":"\udbff"}`, "invalid_display_name"},
		{"invalid UTF-8 in a user id", "{\"user_id\":\"u\x80\"}", "invalid_user_id"},
		{"invalid UTF-8 in an unknown field", "{\"other\":\"\xff\"}", "invalid_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBody([]byte(tc.body))
			e, ok := apierror.As(err)
			if !ok || e.Kind != apierror.Invalid || e.Code != tc.code {
				t.Fatalf("got %v, want 400 %s", err, tc.code)
			}
		})
	}
	t.Run("two client ids differing in invalid bytes never decode alike", func(t *testing.T) {
		for _, raw := range []string{"{\"client_id\":\"a\xffb\"}", "{\"client_id\":\"a\xfeb\"}"} {
			if b, err := decodeBody([]byte(raw)); err == nil {
				t.Fatalf("%q decoded to client_id %q", raw, b.ClientID)
			}
		}
	})
	t.Run("a surrogate pair and U+FFFD itself are kept", func(t *testing.T) {
		b, err := decodeBody([]byte(`{"text":"\ud83d\ude00 \ufffd","client_id":"c"}`))
		if err != nil || b.Text != "\U0001F600 \uFFFD" {
			t.Fatalf("got %q, %v", b.Text, err)
		}
	})
}

// FuzzDecode checks REST body decoding: whatever the bytes, Decode never
// panics, refuses with a 4xx *apierror.Error, and what it accepts holds
// exactly the characters sent: valid UTF-8 and no U+FFFD that the body
// did not spell itself.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"text":"hello","client_id":"c1"}`,
		`{"name":"general","kind":"public","client_id":"x"}`,
		`{"text":"\ud83d\ude00","client_id":"\u00e9"}`,
		`{"text":"\ud800","client_id":"c"}`,
		"{\"text\":\"\xff\xfe\",\"client_id\":\"c\"}",
		"{\"client_id\":\"a\xffb\"}",
		`{"text":"\ufffd"}`,
		`{"text":"a"} {"text":"b"}`,
		`{"text":`,
		`[]`,
		`{"display_name":"\udbff\udfff","user_id":"u"}`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := decodeBody(raw)
		if err != nil {
			e, ok := apierror.As(err)
			if !ok || status(e.Kind) < 400 || status(e.Kind) >= 500 {
				t.Fatalf("refusal %v is not a client error", err)
			}
			return
		}
		spelled := bytes.Contains(raw, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`))
		for _, s := range []string{b.Text, b.ClientID, b.Name, b.DisplayName, b.UserID} {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted %q holding invalid UTF-8 %q", raw, s)
			}
			if strings.ContainsRune(s, utf8.RuneError) && !spelled {
				t.Fatalf("accepted %q and rewrote a string to %q", raw, s)
			}
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted %q, which is not valid JSON", raw)
		}
	})
}

func status(k apierror.Kind) int { return httpapi.Status(k) }
