package notify

import "github.com/papochat/papo/api"

// anyMention reports whether any message could mention someone.
func anyMention(msgs []api.Event) bool {
	for _, m := range msgs {
		for i := 0; i < len(m.Text); i++ {
			if m.Text[i] == '@' {
				return true
			}
		}
	}
	return false
}

// Mentions reports whether text mentions @username as a word: not inside
// an e-mail address or a longer name, case-insensitively. A trailing
// period ends the mention ("thanks @bob.").
func Mentions(text, username string) bool {
	if username == "" {
		return false
	}
	n := len(username)
	for i := 0; i+1+n <= len(text); i++ {
		if text[i] != '@' || (i > 0 && nameByte(text[i-1])) {
			continue
		}
		if !equalFold(text[i+1:i+1+n], username) {
			continue
		}
		rest := text[i+1+n:]
		if rest == "" || !nameByte(rest[0]) {
			return true
		}
		if rest[0] == '.' && (len(rest) == 1 || !nameByte(rest[1])) {
			return true
		}
	}
	return false
}

// nameByte reports whether c may be part of a username
// (^[a-z0-9_.-]{3,32}$).
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
