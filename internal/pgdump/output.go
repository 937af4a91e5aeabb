package pgdump

import (
	"bytes"
	"slices"
	"strings"
	"sync"
)

// outputLog collects what a PostgreSQL tool writes to stderr, in bounded
// memory: the first error line (usually the cause) and the last lines
// (usually the context), for one-line error messages.
type outputLog struct {
	mu       sync.Mutex
	partial  []byte
	first    string   // first line isError accepted
	errors   int      // lines isError accepted
	tail     []string // last maxTail lines
	isError  func(string) bool
	onLine   func(string)
	maxTail  int
	maxBytes int
}

const (
	tailLines    = 8
	maxLineBytes = 512
)

func newOutputLog(isError func(string) bool, onLine func(string)) *outputLog {
	return &outputLog{isError: isError, onLine: onLine, maxTail: tailLines, maxBytes: maxLineBytes}
}

// toolError recognises the error lines of pg_dump, pg_dumpall and
// pg_restore ("pg_dump: error: ..."); their warnings do not fail a run.
func toolError(line string) bool {
	return strings.Contains(line, ": error: ") || strings.HasPrefix(line, "error: ") ||
		strings.Contains(line, "FATAL:") || strings.Contains(line, "PANIC:")
}

func (o *outputLog) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	if len(o.partial) > 64<<10 {
		// A line this long is cut rather than held whole.
		o.line(string(o.partial))
		o.partial = o.partial[:0]
	}
	return len(p), nil
}

func (o *outputLog) line(s string) {
	s = strings.TrimRight(s, "\r ")
	if strings.TrimSpace(s) == "" {
		return
	}
	if len(s) > o.maxBytes {
		s = s[:o.maxBytes] + "..."
	}
	if o.onLine != nil {
		o.onLine(s)
	}
	if o.isError != nil && o.isError(s) {
		if o.errors == 0 {
			o.first = s
		}
		o.errors++
	}
	o.tail = append(o.tail, s)
	if len(o.tail) > o.maxTail {
		o.tail = o.tail[1:]
	}
}

// flush takes a last line that did not end in a newline.
func (o *outputLog) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		o.line(string(o.partial))
		o.partial = nil
	}
}

// firstError is the first error line, "" when there was none.
func (o *outputLog) firstError() string {
	o.flush()
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.first
}

// summary is the output on one line: the first error, then the last lines.
func (o *outputLog) summary() string {
	o.flush()
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.tail
	if o.first != "" && !slices.Contains(lines, o.first) {
		lines = append([]string{o.first, "..."}, lines...)
	}
	if len(lines) == 0 {
		return "(no output on stderr)"
	}
	return strings.Join(lines, "; ")
}
