// Package validate holds the rules for what clients send papo: message
// text, client ids, user ids, room names, usernames, display names and
// passwords, and the check that keeps JSON from rewriting bytes (JSON).
// It is part of the contract, so the WebSocket (services/ws), REST
// (platform/httpapi and the services behind it) and the message consumer
// apply one rule set, and a rule broken is the same error code whichever
// way it arrived. docs/api.md, "Text, ids and names", is the rule book.
//
// Nothing is ever rewritten to make it valid: invalid UTF-8, lone
// surrogates and forbidden characters are refused, so two different
// inputs never become one stored value (or one idempotency key).
package validate

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Error is a broken rule. Code is what the client sees, over REST (with
// status 400) and in a WebSocket error frame alike.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func fail(code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The error codes, one per field. The message says which rule.
const (
	CodeText        = "invalid_text"
	CodeClientID    = "invalid_client_id"
	CodeUserID      = "invalid_user_id"
	CodeRoomID      = "invalid_room_id"
	CodeName        = "invalid_name"
	CodeUsername    = "invalid_username"
	CodeDisplayName = "invalid_display_name"
	CodePassword    = "invalid_password"
	// CodeJSON is the code of a body or frame that is not valid JSON text:
	// invalid UTF-8 or a lone surrogate outside a field named above.
	CodeJSON = "invalid_json"
)

// Limits, in Unicode code points unless said otherwise.
const (
	MaxText        = 4000
	MaxClientID    = 64
	MaxUserID      = 128 // ASCII letters, digits, '.', '_', ':' and '-'
	MaxRoomID      = 64  // ASCII letters, digits, '_' and '-'
	MaxName        = 80
	MaxDisplayName = 64
	MinPassword    = 8
	MaxPassword    = 256 // bytes
)

// Text checks a message's (or an edit's) text: valid UTF-8; 1 to MaxText
// characters; not blank (whitespace and invisible characters only); no
// control character but newline and tab; no bidi embedding or override
// (U+202A–U+202E), and bidi isolates (U+2066–U+2069) balanced. Other
// invisible characters stay allowed: ZWJ and ZWNJ build emoji and are
// needed by Indic and Persian scripts, variation selectors pick emoji
// presentation, tag characters spell subdivision flags, and the
// direction marks LRM, RLM and ALM are how right-to-left text is written.
func Text(s string) error {
	if !utf8.ValidString(s) {
		return fail(CodeText, "text must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n < 1 || n > MaxText {
		return fail(CodeText, "text must be 1-%d characters", MaxText)
	}
	if blank(s) {
		return fail(CodeText, "text must not be blank")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
		return fail(CodeText, "text must not hold control characters other than newline and tab")
	}
	if msg := bidi(s); msg != "" {
		return fail(CodeText, "text %s", msg)
	}
	return nil
}

// ClientID checks a client id, the key that makes a send or a creation
// idempotent: at most MaxClientID characters of valid UTF-8 without
// control or format characters. Required is the caller's choice (a send
// needs one; a room creation may go without).
func ClientID(id string, required bool) error {
	if id == "" {
		if required {
			return fail(CodeClientID, "client_id is required: 1-%d characters", MaxClientID)
		}
		return nil
	}
	if !utf8.ValidString(id) || utf8.RuneCountInString(id) > MaxClientID {
		return fail(CodeClientID, "client_id must be 1-%d characters of valid UTF-8", MaxClientID)
	}
	if strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return fail(CodeClientID, "client_id must not hold control or invisible format characters")
	}
	return nil
}

// UserID checks a user id, wherever one arrives (a user named by a
// client, a sender, a presence query or heartbeat, a key's owner): 1 to
// MaxUserID ASCII letters, digits, '.', '_', ':' or '-'. auth makes every
// id (32 hex digits, for local and external users alike); the wider set
// leaves ids opaque to the services while keeping out what would need
// escaping in a store key, a comma-separated list or a log line.
func UserID(id string) error {
	if id == "" || len(id) > MaxUserID || strings.IndexFunc(id, notUserIDChar) >= 0 {
		return fail(CodeUserID, "user_id must be 1-%d ASCII letters, digits, '.', '_', ':' or '-'", MaxUserID)
	}
	return nil
}

func notUserIDChar(r rune) bool {
	return notRoomIDChar(r) && r != '.' && r != ':'
}

// RoomID checks a room id as papo makes them (the message service names
// every room): 1 to MaxRoomID ASCII letters, digits, '_' or '-'.
func RoomID(id string) error {
	if id == "" || len(id) > MaxRoomID || strings.IndexFunc(id, notRoomIDChar) >= 0 {
		return fail(CodeRoomID, "room id must be 1-%d letters, digits, '_' or '-'", MaxRoomID)
	}
	return nil
}

func notRoomIDChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
}

// RoomName checks a room name and returns it trimmed of surrounding white
// space: 1 to MaxName characters of one line (see name).
func RoomName(s string) (string, error) {
	return name(s, MaxName, CodeName, "name")
}

// DisplayName checks a display name and returns it trimmed; "" stays ""
// (the caller defaults it to the username). The rules are a room name's,
// at most MaxDisplayName characters.
func DisplayName(s string) (string, error) {
	if strings.TrimSpace(s) == "" && utf8.ValidString(s) {
		return "", nil
	}
	return name(s, MaxDisplayName, CodeDisplayName, "display_name")
}

// name checks a one-line name shown to other users: valid UTF-8, 1 to max
// characters after trimming, not blank, no control character (so no line
// break), no bidi embedding or override and balanced isolates (a name
// must not reverse the text that follows it in a list), and no invisible
// character that could make two names look alike (zero-width space, word
// joiner, soft hyphen, fillers, tags …) except ZWJ, ZWNJ, variation
// selectors and direction marks, which emoji and scripts need.
func name(s string, max int, code, field string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fail(code, "%s must be valid UTF-8", field)
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n < 1 || n > max || blank(s) {
		return "", fail(code, "%s must be 1-%d visible characters", field, max)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", fail(code, "%s must not hold control characters", field)
	}
	if msg := bidi(s); msg != "" {
		return "", fail(code, "%s %s", field, msg)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return DefaultIgnorable(r) && !nameInvisibleAllowed(r) }) {
		return "", fail(code, "%s must not hold invisible characters", field)
	}
	return s, nil
}

// nameInvisibleAllowed are the default-ignorable characters a name may
// hold: ZWNJ, ZWJ, the direction marks and variation selectors (bidi
// formatting characters are checked apart).
func nameInvisibleAllowed(r rune) bool {
	switch {
	case r == 0x200C, r == 0x200D, r == 0x200E, r == 0x200F, r == 0x061C:
		return true
	case r >= 0x2066 && r <= 0x2069: // isolates: balanced, checked by bidi
		return true
	}
	return unicode.Is(unicode.Variation_Selector, r)
}

var usernamePattern = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)

// Username checks a username: ^[a-z0-9_.-]{3,32}$. ASCII only, so no
// look-alike letters, invisible or bidi characters, and no case or
// normalization question: a username is compared byte for byte.
func Username(s string) error {
	if !usernamePattern.MatchString(s) {
		return fail(CodeUsername, "username must match ^[a-z0-9_.-]{3,32}$")
	}
	return nil
}

// Password checks a new password: valid UTF-8, at least MinPassword
// characters, at most MaxPassword bytes. Any character is allowed; it is
// only ever hashed.
func Password(s string) error {
	switch {
	case !utf8.ValidString(s):
		return fail(CodePassword, "password must be valid UTF-8")
	case utf8.RuneCountInString(s) < MinPassword:
		return fail(CodePassword, "password must be at least %d characters", MinPassword)
	case len(s) > MaxPassword:
		return fail(CodePassword, "password must be at most %d bytes", MaxPassword)
	}
	return nil
}

// blank reports whether s holds nothing visible: only white space and
// default-ignorable characters.
func blank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && !DefaultIgnorable(r) {
			return false
		}
	}
	return true
}

// bidi returns what is wrong with s's bidi formatting characters, or "":
// an embedding or override (U+202A–U+202E: LRE, RLE, PDF, LRO, RLO) is
// refused outright (they reorder everything after them, the "Trojan
// Source" trick), and every isolate (LRI, RLI, FSI) must be closed by a
// PDI, with no PDI closing nothing.
func bidi(s string) string {
	open := 0
	for _, r := range s {
		switch {
		case r >= 0x202A && r <= 0x202E:
			return fmt.Sprintf("must not hold the bidi embedding or override U+%04X", r)
		case r >= 0x2066 && r <= 0x2068:
			open++
		case r == 0x2069:
			if open == 0 {
				return "must not close a bidi isolate (U+2069) that was not opened"
			}
			open--
		}
	}
	if open > 0 {
		return "must close every bidi isolate it opens (U+2066-U+2068 with U+2069)"
	}
	return ""
}

// DefaultIgnorable reports whether r has the Unicode property
// Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters
// that render as nothing. It is derived, as Unicode defines it, from
// properties the unicode package has: Other_Default_Ignorable_Code_Point,
// Variation_Selector and format characters (Cf), less white space, the
// interlinear annotation characters U+FFF9–U+FFFB, the Egyptian
// hieroglyph format controls U+13430–U+1343F and the prepended
// concatenation marks.
func DefaultIgnorable(r rune) bool {
	switch {
	case unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r), unicode.Is(unicode.Variation_Selector, r):
		return true
	case !unicode.Is(unicode.Cf, r), unicode.IsSpace(r):
		return false
	case r >= 0xFFF9 && r <= 0xFFFB, r >= 0x13430 && r <= 0x1343F:
		return false
	}
	return !unicode.Is(unicode.Prepended_Concatenation_Mark, r)
}
