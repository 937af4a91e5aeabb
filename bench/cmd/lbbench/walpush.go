package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// pushRecord is one archive_command invocation as the wrapper logged it.
type pushRecord struct {
	StartNS, EndNS int64
	ExitCode       int
	File           string
}

// parsePushLog reads the wrapper's "start_ns end_ns exit_code file" lines.
// Malformed lines (a crash mid-write) are counted and skipped, not fatal.
func parsePushLog(r io.Reader) (recs []pushRecord, bad int, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rec, ok := parsePushLine(line)
		if !ok {
			bad++
			continue
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return recs, bad, fmt.Errorf("read wal-push log: %w", err)
	}
	return recs, bad, nil
}

func parsePushLine(line string) (pushRecord, bool) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return pushRecord{}, false
	}
	start, err1 := strconv.ParseInt(f[0], 10, 64)
	end, err2 := strconv.ParseInt(f[1], 10, 64)
	rc, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil || end < start || start <= 0 {
		return pushRecord{}, false
	}
	return pushRecord{StartNS: start, EndNS: end, ExitCode: rc, File: f[3]}, true
}

func readPushLog(path string) ([]pushRecord, int, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open wal-push log: %w", err)
	}
	defer f.Close()
	return parsePushLog(f)
}

// walPushStats summarises the pushes of one window.
type walPushStats struct {
	Invocations int     `json:"invocations"`
	Segments    int     `json:"segments"` // successful pushes of full WAL segments
	Failures    int     `json:"failures"`
	MedianMS    float64 `json:"median_ms"`
	P99MS       float64 `json:"p99_ms"`
	MaxMS       float64 `json:"max_ms"`
	MeanMS      float64 `json:"mean_ms"`
	MalformedLn int     `json:"malformed_lines,omitempty"`
}

// summarisePushes computes latency over the successful pushes that started
// within [fromNS, toNS]. Failed pushes are counted, not timed: a fast failure
// would flatter the latency.
func summarisePushes(recs []pushRecord, fromNS, toNS int64) walPushStats {
	var st walPushStats
	var ms []float64
	for _, r := range recs {
		if r.StartNS < fromNS || r.StartNS > toNS {
			continue
		}
		st.Invocations++
		if r.ExitCode != 0 {
			st.Failures++
			continue
		}
		if isSegmentName(r.File) {
			st.Segments++
		}
		ms = append(ms, float64(r.EndNS-r.StartNS)/1e6)
	}
	if len(ms) == 0 {
		return st
	}
	slices.Sort(ms)
	var sum float64
	for _, v := range ms {
		sum += v
	}
	st.MeanMS = sum / float64(len(ms))
	st.MedianMS = percentile(ms, 50)
	st.P99MS = percentile(ms, 99)
	st.MaxMS = ms[len(ms)-1]
	return st
}

// percentile returns the nearest-rank p-th percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// isSegmentName reports whether name is a WAL segment file name (24 hex
// digits), as opposed to a .history, .backup or .partial file.
func isSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for _, r := range name {
		if !strings.ContainsRune("0123456789ABCDEF", r) {
			return false
		}
	}
	return true
}
