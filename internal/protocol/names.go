package protocol

import "strings"

// MaxNameLength is the longest valid topic or channel name, the
// "#ephemeral" suffix included.
const MaxNameLength = 64

const ephemeralSuffix = "#ephemeral"

// IsValidTopicName reports whether name is a valid topic name: 1 to 64
// characters of [.a-zA-Z0-9_-], optionally ending in "#ephemeral".
func IsValidTopicName(name string) bool {
	return isValidName(name)
}

// IsValidChannelName reports whether name is a valid channel name; the rule
// is the same as for topics.
func IsValidChannelName(name string) bool {
	return isValidName(name)
}

// IsEphemeral reports whether name ends in "#ephemeral".
func IsEphemeral(name string) bool {
	return strings.HasSuffix(name, ephemeralSuffix)
}

// isValidName is the hand-written equivalent of
// ^[.a-zA-Z0-9_-]+(#ephemeral)?$ with a length of 1 to 64; a fuzz test
// checks it against that regular expression.
func isValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLength {
		return false
	}
	base := strings.TrimSuffix(name, ephemeralSuffix)
	if len(base) == 0 {
		return false
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
