package postgres

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// TimelineSwitch is one line of a timeline history file: timeline TLI was
// left at SwitchLSN, where its child timeline begins.
type TimelineSwitch struct {
	TLI       uint32
	SwitchLSN lifeboat.LSN
	Reason    string
}

// maxHistoryLine bounds a history line; PostgreSQL writes short lines, and a
// huge one means the file is not a history file.
const maxHistoryLine = 64 << 10

// ParseTimelineHistory parses the contents of a "<TLI>.history" file. The
// entries are returned in file order, which is ancestry order: each entry's
// timeline is the parent of the next one's. Like PostgreSQL, blank lines and
// lines starting with '#' are ignored.
func ParseTimelineHistory(data []byte) ([]TimelineSwitch, error) {
	var out []TimelineSwitch
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), maxHistoryLine)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimLeft(sc.Text(), " \t\r\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		sw, err := parseHistoryLine(line)
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", lineNo, err)
		}
		if n := len(out); n > 0 {
			prev := out[n-1]
			if sw.TLI <= prev.TLI {
				return nil, fmt.Errorf("timeline history line %d: timeline IDs must increase (%d after %d)", lineNo, sw.TLI, prev.TLI)
			}
			if sw.SwitchLSN < prev.SwitchLSN {
				return nil, fmt.Errorf("timeline history line %d: switch point %s precedes the previous one %s", lineNo, sw.SwitchLSN, prev.SwitchLSN)
			}
		}
		out = append(out, sw)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read timeline history: %w", err)
	}
	return out, nil
}

func parseHistoryLine(line string) (TimelineSwitch, error) {
	tliField, rest := cutSpace(line)
	lsnField, reason := cutSpace(rest)
	if lsnField == "" {
		return TimelineSwitch{}, fmt.Errorf("%q: want \"parentTLI<TAB>switchpoint<TAB>reason\"", line)
	}
	tli, err := strconv.ParseUint(tliField, 10, 32)
	if err != nil || tli == 0 {
		return TimelineSwitch{}, fmt.Errorf("%q: invalid timeline ID %q", line, tliField)
	}
	lsn, err := lifeboat.ParseLSN(lsnField)
	if err != nil {
		return TimelineSwitch{}, fmt.Errorf("%q: %w", line, err)
	}
	return TimelineSwitch{TLI: uint32(tli), SwitchLSN: lsn, Reason: strings.TrimSpace(reason)}, nil
}

// cutSpace splits off the first whitespace-delimited field.
func cutSpace(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t\r\v\f")
	i := strings.IndexAny(s, " \t\r\v\f")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t\r\v\f")
}

// TimelineForLSN tells which timeline holds position lsn on the way to
// timeline target, whose history file parsed to history. A switch point
// belongs to the child: the parent's WAL ends just before it. That is what
// recovery needs to pick the right segment names when replaying across
// timeline switches.
func TimelineForLSN(history []TimelineSwitch, target uint32, lsn lifeboat.LSN) uint32 {
	for _, sw := range history {
		if lsn < sw.SwitchLSN {
			return sw.TLI
		}
	}
	return target
}

// TimelineOnPath reports whether timeline tli is target itself or one of its
// ancestors, that is whether recovery towards target can pass through tli.
func TimelineOnPath(history []TimelineSwitch, target, tli uint32) bool {
	if tli == target {
		return true
	}
	for _, sw := range history {
		if sw.TLI == tli {
			return true
		}
	}
	return false
}
