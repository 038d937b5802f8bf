package validate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/papochat/papo/api/validate"
)

// codeOf returns the code of a validation error, "" for nil.
func codeOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *validate.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want a *validate.Error", err, err)
	}
	return e.Code
}

type rule struct {
	name string
	in   string
	code string // "" for accepted
}

func run(t *testing.T, rules []rule, check func(string) error) {
	t.Helper()
	for _, tc := range rules {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeOf(t, check(tc.in)); got != tc.code {
				t.Fatalf("%q: got code %q, want %q", tc.in, got, tc.code)
			}
		})
	}
}

func TestText(t *testing.T) {
	run(t, []rule{
		{"plain text", "hello", ""},
		{"newline and tab", "a\n\tb", ""},
		{"4000 characters", strings.Repeat("é", 4000), ""},
		{"emoji family with ZWJ", "\U0001F468\u200D\U0001F469\u200D\U0001F467", ""},
		{"ZWNJ in Persian", "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645", ""},
		{"flag of England with tag characters", "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F", ""},
		{"right-to-left mark", "\u200Fשלום", ""},
		{"balanced isolate", "user \u2067שלום\u2069 wrote", ""},
		{"U+FFFD itself is a character", "\uFFFD", ""},
		{"empty", "", "invalid_text"},
		{"blank", " \n\t ", "invalid_text"},
		{"only invisible characters", "\u200B\u2060\uFEFF", "invalid_text"},
		{"4001 characters is the one over-long code", strings.Repeat("a", 4001), "invalid_text"},
		{"invalid UTF-8", "a\xffb", "invalid_text"},
		{"an encoded surrogate", "a\xed\xa0\x80b", "invalid_text"},
		{"NUL", "a\x00b", "invalid_text"},
		{"carriage return", "a\rb", "invalid_text"},
		{"C1 control", "a\u0085b", "invalid_text"},
		{"right-to-left override", "invoice\u202Egpj.exe", "invalid_text"},
		{"left-to-right embedding", "\u202Aabc", "invalid_text"},
		{"pop directional formatting", "abc\u202C", "invalid_text"},
		{"unclosed isolate", "a\u2066b", "invalid_text"},
		{"isolate closed twice", "\u2067a\u2069\u2069", "invalid_text"},
		{"stray pop isolate", "a\u2069b", "invalid_text"},
	}, validate.Text)
}

func TestClientID(t *testing.T) {
	required := func(s string) error { return validate.ClientID(s, true) }
	run(t, []rule{
		{"uuid", "6f1c2d9e-8b1a-4c55-9f0e-3a2b1c0d9e8f", ""},
		{"64 characters", strings.Repeat("é", 64), ""},
		{"missing when required", "", "invalid_client_id"},
		{"65 characters", strings.Repeat("a", 65), "invalid_client_id"},
		{"invalid UTF-8", "a\xffb", "invalid_client_id"},
		{"control character", "a\x01b", "invalid_client_id"},
		{"zero-width space", "a\u200Bb", "invalid_client_id"},
		{"bidi override", "a\u202Eb", "invalid_client_id"},
	}, required)
	if err := validate.ClientID("", false); err != nil {
		t.Fatalf("an optional client_id left out: %v", err)
	}
}

func TestUserID(t *testing.T) {
	run(t, []rule{
		{"hex id", "0123456789abcdef0123456789abcdef", ""},
		{"every allowed character", "AZaz09._:-", ""},
		{"128 bytes", strings.Repeat("u", 128), ""},
		{"empty", "", "invalid_user_id"},
		{"129 bytes", strings.Repeat("u", 129), "invalid_user_id"},
		{"invalid UTF-8", "u\xff", "invalid_user_id"},
		{"list separator", "a,b", "invalid_user_id"},
		{"pipe", "a|b", "invalid_user_id"},
		{"space", "a b", "invalid_user_id"},
		{"slash", "a/b", "invalid_user_id"},
		{"non-ASCII letter", "jos\u00e9", "invalid_user_id"},
		{"control character", "u\n", "invalid_user_id"},
		{"zero-width joiner", "u\u200D", "invalid_user_id"},
	}, validate.UserID)
}

func TestNames(t *testing.T) {
	rules := []rule{
		{"plain", "general", ""},
		{"emoji with ZWJ and variation selector", "\u2764\uFE0F team \U0001F468\u200D\U0001F4BB", ""},
		{"Arabic with a mark", "\u0627\u0644\u0639\u0631\u0628\u064A\u0629\u200F", ""},
		{"empty", "", "X"},
		{"blank", "   ", "X"},
		{"only a zero-width space", "\u200B", "X"},
		{"invalid UTF-8", "gen\xffral", "X"},
		{"newline", "a\nb", "X"},
		{"tab", "a\tb", "X"},
		{"right-to-left override", "admin\u202Enimda", "X"},
		{"unbalanced isolate", "\u2068name", "X"},
		{"zero-width space inside", "gen\u200Beral", "X"},
		{"word joiner", "gen\u2060eral", "X"},
		{"soft hyphen", "gen\u00ADeral", "X"},
		{"Hangul filler", "\u3164", "X"},
		{"tag characters", "a\U000E0041", "X"},
	}
	for _, tc := range []struct {
		field string
		code  string
		max   int
		check func(string) (string, error)
	}{
		{"room name", "invalid_name", validate.MaxName, validate.RoomName},
		{"display name", "invalid_display_name", validate.MaxDisplayName, validate.DisplayName},
	} {
		t.Run(tc.field, func(t *testing.T) {
			rs := append([]rule{
				{"longest", strings.Repeat("ñ", tc.max), ""},
				{"one too long", strings.Repeat("ñ", tc.max+1), "X"},
			}, rules...)
			for _, r := range rs {
				want := r.code
				if want == "X" {
					want = tc.code
				}
				if tc.field == "display name" && (r.name == "empty" || r.name == "blank") {
					want = "" // left out: the username stands in
				}
				t.Run(r.name, func(t *testing.T) {
					_, err := tc.check(r.in)
					if got := codeOf(t, err); got != want {
						t.Fatalf("%q: got code %q, want %q", r.in, got, want)
					}
				})
			}
		})
	}
	if got, err := validate.RoomName("  general  "); err != nil || got != "general" {
		t.Fatalf("RoomName trims: got %q, %v", got, err)
	}
}

func TestUsername(t *testing.T) {
	run(t, []rule{
		{"lower-case ASCII", "alice_1.x-y", ""},
		{"too short", "al", "invalid_username"},
		{"33 characters", strings.Repeat("a", 33), "invalid_username"},
		{"upper case", "Alice", "invalid_username"},
		{"zero-width space", "ali\u200Bce", "invalid_username"},
		{"zero-width joiner", "ali\u200Dce", "invalid_username"},
		{"soft hyphen", "ali\u00ADce", "invalid_username"},
		{"right-to-left override", "ali\u202Ece", "invalid_username"},
		{"right-to-left mark", "alice\u200F", "invalid_username"},
		{"Cyrillic a", "\u0430lice", "invalid_username"},
		{"full-width letters", "\uFF41lice", "invalid_username"},
	}, validate.Username)
}

func TestPassword(t *testing.T) {
	run(t, []rule{
		{"eight characters", "12345678", ""},
		{"eight multi-byte characters", "ééééééé\U0001F600", ""},
		{"256 bytes", strings.Repeat("p", 256), ""},
		{"seven characters", "1234567", "invalid_password"},
		{"257 bytes", strings.Repeat("p", 257), "invalid_password"},
		{"invalid UTF-8", "password\xff", "invalid_password"},
	}, validate.Password)
}

func TestDefaultIgnorable(t *testing.T) {
	for _, tc := range []struct {
		r    rune
		want bool
	}{
		{0x00AD, true}, {0x034F, true}, {0x061C, true}, {0x115F, true}, {0x180E, true},
		{0x200B, true}, {0x200D, true}, {0x202E, true}, {0x2060, true}, {0x2066, true},
		{0x3164, true}, {0xFE0F, true}, {0xFEFF, true}, {0xFFA0, true}, {0x1D173, true},
		{0xE0001, true}, {0xE0FFF, true},
		{'a', false}, {' ', false}, {0x00A0, false}, {0x0600, false}, {0xFFF9, false},
		{0x13430, false}, {0x2028, false}, {0xFFFD, false},
	} {
		if got := validate.DefaultIgnorable(tc.r); got != tc.want {
			t.Errorf("DefaultIgnorable(U+%04X) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		code string
	}{
		{"plain object", `{"text":"hi","client_id":"c1"}`, ""},
		{"escapes", `{"text":"a\"b\\c\n\u00e9\/"}`, ""},
		{"a surrogate pair", `{"text":"\ud83d\ude00"}`, ""},
		{"a surrogate pair in upper case", `{"text":"\uD83D\uDE00"}`, ""},
		{"raw UTF-8", `{"name":"café ☕"}`, ""},
		{"invalid UTF-8 in text", "{\"text\":\"a\xff\xfeb\"}", "invalid_text"},
		{"invalid UTF-8 in client_id", "{\"text\":\"ok\",\"client_id\":\"a\xffb\"}", "invalid_client_id"},
		{"invalid UTF-8 in a room name", "{\"name\":\"gen\xc3\"}", "invalid_name"},
		{"invalid UTF-8 in a display name", "{\"username\":\"bob\",\"display_name\":\"B\xffb\"}", "invalid_display_name"},
		{"invalid UTF-8 in a password", "{\"password\":\"pass\xffword\"}", "invalid_password"},
		{"lone high surrogate", `{"text":"\ud800"}`, "invalid_text"},
		{"lone low surrogate", `{"text":"\udc00x"}`, "invalid_text"},
		{"high surrogate before a non-surrogate escape", `{"client_id":"\ud800\u0041"}`, "invalid_client_id"},
		{"two high surrogates", `{"name":"\ud800\ud800"}`, "invalid_name"},
		{"reversed pair", `{"text":"\ude00\ud83d"}`, "invalid_text"},
		{"an escaped backslash before u is no escape", `{"text":"\\ud800"}`, ""},
		{"invalid UTF-8 in a key", "{\"te\xffxt\":\"hi\"}", "invalid_json"},
		{"invalid UTF-8 in an unknown field", "{\"other\":\"\xff\"}", "invalid_json"},
		{"the field after a nested object", "{\"a\":{\"b\":1},\"text\":\"\xff\"}", "invalid_text"},
		{"inside a nested object", "{\"text\":{\"inner\":\"\xff\"}}", "invalid_json"},
		{"a value that looks like a key is not one", "{\"text\":\"x\",\"y\":\"\xff\"}", "invalid_json"},
		{"unterminated string", "{\"text\":\"\xff", "invalid_text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeOf(t, validate.JSON([]byte(tc.in))); got != tc.code {
				t.Fatalf("%q: got code %q, want %q", tc.in, got, tc.code)
			}
		})
	}
}

// TestRoomID: the limit and the alphabet of a room id.
func TestRoomID(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"r", "r_1-A", strings.Repeat("r", validate.MaxRoomID)} {
		if err := validate.RoomID(ok); err != nil {
			t.Errorf("RoomID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("r", validate.MaxRoomID+1), "r 1", "r|1", "r/1", "é", "r\x00"} {
		if err := validate.RoomID(bad); err == nil || err.(*validate.Error).Code != validate.CodeRoomID {
			t.Errorf("RoomID(%q) = %v, want %s", bad, err, validate.CodeRoomID)
		}
	}
}
