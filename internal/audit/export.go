package audit

import (
	"encoding/csv"
	"fmt"
	"io"
	"log/syslog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Formats of Export.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// Exporter writes events for an auditor, one at a time.
type Exporter struct {
	format string
	w      io.Writer
	csv    *csv.Writer
}

// NewExporter writes format ("jsonl" or "csv") to w.
func NewExporter(w io.Writer, format string) (*Exporter, error) {
	x := &Exporter{format: format, w: w}
	switch format {
	case FormatJSONL:
	case FormatCSV:
		x.csv = csv.NewWriter(w)
		if err := x.csv.Write(csvHeader); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("export format %q: want jsonl or csv", format)
	}
	return x, nil
}

var csvHeader = []string{"seq", "time", "start", "type", "asset", "repository", "outcome", "error",
	"user", "uid", "host", "keys", "ssh_client", "http_client", "args", "snapshot", "request", "details", "chain", "chain_hash"}

// Write writes one event. JSONL lines are the stored encoding exactly,
// so SHA-256 of a line (without its newline) is the event's digest and
// the chain can be recomputed from the export alone (docs/audit.md).
func (x *Exporter) Write(r *Record, e *Event) error {
	if x.format == FormatJSONL {
		if _, err := x.w.Write(r.Body); err != nil {
			return err
		}
		_, err := io.WriteString(x.w, "\n")
		return err
	}
	return x.csv.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), e.Start.UTC().Format(time.RFC3339Nano),
		e.Type, e.Asset, e.Repository, e.Outcome, e.Error, e.Actor.User, strconv.Itoa(e.Actor.UID), e.Actor.Host,
		encodeKeys(e.Actor.Keys), e.Source.SSH, e.Source.HTTP, strings.Join(e.Args, " "), e.Snapshot, e.Request,
		encodeDetails(e.Details), e.Chain, r.Hash.String()})
}

// Close flushes what is buffered.
func (x *Exporter) Close() error {
	if x.csv != nil {
		x.csv.Flush()
		return x.csv.Error()
	}
	return nil
}

func encodeDetails(d map[string]string) string {
	parts := make([]string, 0, len(d))
	for k, v := range d {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// Syslog sends events to the local syslog (journald reads the same
// socket), facility authpriv: the copy a host's log shipping takes off
// the machine.
type Syslog struct {
	w *syslog.Writer
}

// OpenSyslog connects to the local syslog.
func OpenSyslog() (*Syslog, error) {
	w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_AUTHPRIV, "lifeboat-audit")
	if err != nil {
		return nil, fmt.Errorf("audit: syslog: %w", err)
	}
	return &Syslog{w: w}, nil
}

// Send logs one event: its stored encoding, which carries its place in
// the chain, and the chain's hash after it.
func (s *Syslog) Send(r *Record) error {
	msg := string(r.Body) + " chain_hash=" + r.Hash.String()
	if strings.Contains(msg, `"outcome":"ok"`) {
		return s.w.Info(msg)
	}
	return s.w.Warning(msg)
}

// Close disconnects.
func (s *Syslog) Close() error { return s.w.Close() }
