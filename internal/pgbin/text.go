package pgbin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// confLine writes one postgresql.conf line setting name to the raw value.
func confLine(name, value string) (string, error) {
	if err := CheckSettingName(name); err != nil {
		return "", err
	}
	if strings.ContainsAny(value, "\r\n") {
		return "", fmt.Errorf("setting %s: the value contains a line break: %q", name, value)
	}
	return name + " = " + QuoteConf(value) + "\n", nil
}

// CheckSettingName reports a name that cannot be a configuration parameter
// (letters, digits, "_" and "." for an extension's, not starting with a
// digit), which could otherwise smuggle text into a configuration file or a
// command line.
func CheckSettingName(name string) error {
	valid := name != "" && !(name[0] >= '0' && name[0] <= '9')
	for _, r := range name {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			valid = false
		}
	}
	if !valid {
		return fmt.Errorf("invalid configuration parameter name %q", name)
	}
	return nil
}

// QuoteConf quotes s as a value in postgresql.conf, where a backslash
// starts an escape sequence.
func QuoteConf(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// shellQuote quotes s for /bin/sh, which pg_ctl hands the server's options
// to.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// firstLines joins the first n lines of s with " | ", for a one-line
// message.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, " | ")
}

// logHint is the last errors the server logged past offset from, for a
// message.
func (s *Server) logHint(from int64) string {
	lines := s.logErrors(from, 3, "FATAL:", "PANIC:", "ERROR:")
	if len(lines) == 0 {
		return ""
	}
	return " (server log: " + strings.Join(lines, " | ") + ")"
}

// logSize is the size of the server log, where what a start logs begins.
func (s *Server) logSize() int64 {
	fi, err := os.Stat(s.LogFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logErrors returns the last n lines of the server log past offset from
// that hold one of the levels, from the level on.
func (s *Server) logErrors(from int64, n int, levels ...string) []string {
	f, err := os.Open(s.LogFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, lvl := range levels {
			if i := strings.Index(l, lvl); i >= 0 {
				out = append(out, strings.TrimSpace(l[i:]))
				break
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// LogTail returns the last n lines of the server log, or why it cannot be
// read.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(server log %s: %v)", s.LogFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogTime finds the time of the first line of the server log at path that
// contains marker. The line must start with the time to the millisecond in
// UTC, as Start makes the server write it (log_line_prefix "%m ",
// log_timezone UTC).
func LogTime(path, marker string) (time.Time, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	const stamp = "2006-01-02 15:04:05.000 UTC"
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, marker) || len(l) < len(stamp) {
			continue
		}
		if t, err := time.Parse(stamp, l[:len(stamp)]); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
