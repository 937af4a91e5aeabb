package pgdump

import (
	"fmt"
	"regexp"
	"strings"
)

// Allowed psql meta-commands in a globals file, each alone on its line:
// pg_dumpall's \restrict and \unrestrict (from 17.6, 16.10, 15.14, 14.19
// and 13.22 on) with the key it chose, and \connect to a database by a
// plain or double-quoted name. Their arguments hold no backquote, colon
// or backslash, so psql runs no shell command and substitutes no
// variable in them.
var allowedMeta = regexp.MustCompile(`^\\(restrict|unrestrict) [A-Za-z0-9]+[ \t]*$|^\\(connect|c) ([A-Za-z0-9_]+|"[^"\\:` + "`" + `]*")[ \t]*$`)

// checkGlobals reads a globals file (pg_dumpall --globals-only) the way
// psql's lexer would and refuses it when psql could run anything but SQL
// from it: a meta-command other than those allowedMeta matches (\! runs
// a shell command, \o |cmd pipes, \copy ... program, \i reads another
// file), or a construct after which this reading and psql's might
// disagree on where a meta-command starts. pg_dumpall's own \restrict key
// is no protection against a forged file: its author chooses the key, and
// psql expands backquotes (running the command inside) in \unrestrict's
// argument even while restricted.
//
// Where the reading could depend on the server's settings it refuses
// instead of guessing: a backslash inside a single-quoted string (an
// escape when standard_conforming_strings is off, text when on), a
// dollar sign outside quotes (dollar quoting), a block comment, a colon
// outside quotes (psql variable substitution, :name or :'name'). No file
// pg_dumpall writes holds those, except a string with a backslash in a
// role's comment or setting; such a file is refused and can be restored
// by hand after reading it. name says which file, in the errors.
func checkGlobals(name string, data []byte) error {
	line := 1
	refuse := func(what string) error {
		return fmt.Errorf("%s, line %d: %s; refusing to run it through psql (a forged globals file could run commands on this host; check the file, then run it by hand if it is genuine)", name, line, what)
	}
	lineStart := true
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line++
			lineStart = true
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			// psql's lexer takes whitespace before a meta-command; the
			// column does not matter to it, but a meta-command must
			// start its line here (see below).
			i++
			continue
		case c == '-' && i+1 < len(data) && data[i+1] == '-':
			// A comment to the end of the line: psql ends it at \n or \r.
			for i < len(data) && data[i] != '\n' && data[i] != '\r' {
				i++
			}
			continue
		case c == '\\':
			if !lineStart || (i > 0 && data[i-1] != '\n') {
				return refuse("a psql meta-command that does not start its line")
			}
			end := i
			for end < len(data) && data[end] != '\n' {
				end++
			}
			meta := string(data[i:end])
			if !allowedMeta.MatchString(meta) {
				return refuse(fmt.Sprintf("psql meta-command %q is not one pg_dumpall writes", shorten(meta)))
			}
			i = end
			continue
		case c == '\'':
			// A backslash may escape the quote depending on the server's
			// settings: refused, so that psql and this check read alike.
			end, lines, why := closingQuote(data, i, true)
			if why != "" {
				return refuse(why)
			}
			i, line = end+1, line+lines
		case c == '"':
			// A quoted identifier: "" is a quote, a backslash is text
			// whatever the settings.
			end, lines, why := closingQuote(data, i, false)
			if why != "" {
				return refuse(why)
			}
			i, line = end+1, line+lines
		case c == '$':
			return refuse("a dollar sign outside quotes (dollar quoting)")
		case c == '/' && i+1 < len(data) && data[i+1] == '*':
			return refuse("a block comment")
		case c == ':':
			if i+1 < len(data) && data[i+1] == ':' {
				i += 2 // a cast, which psql leaves alone
			} else {
				return refuse("a colon outside quotes (psql variable substitution)")
			}
		case c == '`':
			return refuse("a backquote outside quotes")
		default:
			i++
		}
		lineStart = false
	}
	return nil
}

// shorten keeps a quoted line of a file short in a message.
func shorten(s string) string {
	s = strings.TrimRight(s, "\r")
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// closingQuote finds the quote that closes the one at data[open] (a
// doubled quote stands for itself) and counts the line breaks on the way;
// why says what is wrong instead: no end, or a backslash where noBackslash.
func closingQuote(data []byte, open int, noBackslash bool) (end, lines int, why string) {
	q := data[open]
	what := "a string"
	if q == '"' {
		what = "a quoted identifier"
	}
	for j := open + 1; j < len(data); j++ {
		switch {
		case data[j] == '\\' && noBackslash:
			return 0, 0, "a backslash inside " + what
		case data[j] == q && j+1 < len(data) && data[j+1] == q:
			j++
		case data[j] == q:
			return j, lines, ""
		case data[j] == '\n':
			lines++
		}
	}
	return 0, 0, what + " that never ends"
}
