package storage

import (
	"fmt"
	"strings"
)

// MaxNameLength bounds an object name; S3 allows 1024 bytes per key, and a
// name must fit every backend.
const MaxNameLength = 1024

// ValidateName reports whether name may name an object: one or more
// slash-separated segments of [A-Za-z0-9._-], none empty and none beginning
// with a dot. The dot rule rules out "." and ".." (so a name cannot escape a
// directory backend's root) and leaves hidden names to backends for their own
// bookkeeping, such as the filesystem backend's temporary files. Every
// backend checks names with it before touching storage; the error is
// permanent.
func ValidateName(name string) error {
	if reason := nameProblem(name); reason != "" {
		return Permanent(fmt.Errorf("invalid object name %q: %s", name, reason))
	}
	return nil
}

func nameProblem(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > MaxNameLength {
		return fmt.Sprintf("longer than %d bytes", MaxNameLength)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" {
			return "empty path segment"
		}
		if seg[0] == '.' {
			return "segment begins with a dot"
		}
		for i := 0; i < len(seg); i++ {
			if !nameByte(seg[i]) {
				return fmt.Sprintf("character %q not allowed", seg[i])
			}
		}
	}
	return ""
}

// nameByte reports whether c may appear in a name segment.
func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '-':
		return true
	}
	return false
}
