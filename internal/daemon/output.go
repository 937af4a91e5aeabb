package daemon

import (
	"fmt"
	"strings"
	"sync"
)

// outputLimit bounds what is kept of each output of a run (the child's
// output, the hooks' together): the start and the end, which hold the
// summary and the error.
const outputLimit = 64 << 10

// outputBuffer keeps the first and the last bytes written to it, up to a
// limit, and counts what it left out between them.
type outputBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	limit   int
	dropped int64
}

func newOutputBuffer(limit int) *outputBuffer { return &outputBuffer{limit: limit} }

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.limit/4 - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head, p = append(b.head, p[:k]...), p[k:]
	}
	b.tail = append(b.tail, p...)
	// Trimmed in batches, so a chatty child costs amortised copies.
	if keep := b.limit - b.limit/4; len(b.tail) > 2*keep {
		cut := len(b.tail) - keep
		b.dropped += int64(cut)
		b.tail = append([]byte(nil), b.tail[cut:]...)
	}
	return n, nil
}

// String is the kept output, with a marker where bytes were left out.
func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail, dropped := b.tail, b.dropped
	if keep := b.limit - b.limit/4; len(tail) > keep {
		dropped += int64(len(tail) - keep)
		tail = tail[len(tail)-keep:]
	}
	if dropped == 0 {
		return string(b.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes left out ...]\n%s", b.head, dropped, tail)
}

// tailString is the end of the output, where a hook's last line is.
func (b *outputBuffer) tailString() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tail) > 0 {
		return string(b.tail)
	}
	return string(b.head)
}

// lastLine is the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// oneLine keeps a message on one line, for the record and the log.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func errLine(err error) string { return oneLine(err.Error()) }
