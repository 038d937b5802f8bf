package validate

import (
	"unicode/utf16"
	"unicode/utf8"
)

// fieldCodes are the codes of the contract's fields, for JSON: a string
// that cannot be decoded faithfully is refused with its field's code.
var fieldCodes = map[string]string{
	"text":         CodeText,
	"client_id":    CodeClientID,
	"user_id":      CodeUserID,
	"name":         CodeName,
	"username":     CodeUsername,
	"display_name": CodeDisplayName,
	"password":     CodePassword,
}

// JSON checks that every string in a JSON document decodes to exactly the
// characters the client sent. encoding/json does not refuse, it rewrites:
// invalid UTF-8 bytes and an escaped lone surrogate ("\ud800") both
// become U+FFFD, so "a\xffb" and "a\xfeb" would be stored as one text, or
// as one idempotency key. Call it before json.Unmarshal. A bad string is
// refused with the code of the member it belongs to (a "text" value is
// invalid_text, a "client_id" invalid_client_id, …) and with invalid_json
// when it is a key or belongs to no field of the contract. It checks
// strings only; the rest of the syntax is left to the decoder.
func JSON(data []byte) error {
	key := "" // the last object key seen, which owns the strings after it
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		end, problem := scanString(data, i+1)
		isKey := followedByColon(data, end+1)
		if problem != "" {
			code := CodeJSON
			if c, ok := fieldCodes[key]; ok && !isKey {
				code = c
			}
			field := "a string"
			if !isKey && key != "" {
				field = key
			}
			return fail(code, "%s %s", field, problem)
		}
		if isKey {
			key = string(data[i+1 : end]) // an escaped key matches no field; fine
		}
		i = end
	}
	return nil
}

// scanString scans the string whose content starts at data[i] and returns
// the index of its closing quote (len(data) when unterminated) and what
// is wrong with it, or "".
func scanString(data []byte, i int) (end int, problem string) {
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			return i, problem
		case c == '\\':
			if i+1 < len(data) && data[i+1] == 'u' {
				r, ok := hex4(data, i+2)
				if ok && utf16.IsSurrogate(r) {
					low, okLow := rune(0), false
					if r < 0xDC00 && i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
						low, okLow = hex4(data, i+8)
						okLow = okLow && low >= 0xDC00 && low <= 0xDFFF
					}
					if !okLow {
						if problem == "" {
							problem = "must not hold a lone UTF-16 surrogate escape (\\ud800-\\udfff)"
						}
					} else {
						i += 6 // the low half
					}
				}
				i += 6
				continue
			}
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 && problem == "" {
				problem = "must be valid UTF-8"
			}
			i += max(size, 1)
		}
	}
	return len(data), problem
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// followedByColon reports whether the next non-space byte at or after i
// is a colon: the string before it was an object key.
func followedByColon(data []byte, i int) bool {
	for ; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case ':':
			return true
		}
		return false
	}
	return false
}
