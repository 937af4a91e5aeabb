// Package evidence holds the records that prove recoverability: the report
// a restore drill leaves behind. The same JSON document is kept in the
// local catalog and stored, encrypted, in the repository the drill
// restored from, so that a copy of the repository carries its own evidence.
// Reports are append-only history; nothing here is ever rewritten.
package evidence

import (
	"encoding/json"
	"fmt"
	"time"
)

// Version is the version of the DrillReport document this build writes.
const Version = 1

// Phase names, in the order a drill goes through them. Not every kind has
// every phase (a SQLite drill replays no WAL).
const (
	PhaseFetch  = "fetch"      // reading the snapshot (and WAL) out of the repository
	PhaseWrite  = "write"      // writing the restored files (or loading a dump)
	PhaseReplay = "wal_replay" // PostgreSQL recovery up to the target
	PhaseStart  = "start"      // starting the restored server until it accepts queries
	PhaseChecks = "checks"     // integrity checks and validation queries
)

// DrillReport is what one drill did and found.
type DrillReport struct {
	Version    int    `json:"version"`
	ID         string `json:"id"` // unique; also the name of the report in the repository
	Asset      string `json:"asset"`
	Kind       string `json:"kind"`
	Tier       string `json:"tier,omitempty"`
	Repository string `json:"repository"`
	Host       string `json:"host"`
	Trigger    string `json:"trigger"` // manual or schedule
	// Point is how the target was chosen: latest, random, time or
	// snapshot.
	Point string `json:"point"`
	// Target is the moment the drill restored to: the recovery target
	// time, or the snapshot's time for kinds without WAL.
	Target time.Time `json:"target"`
	// Snapshot is the full ID of the snapshot restored from.
	Snapshot     string    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended"`
	Phases       []Phase   `json:"phases"`
	// RTOSeconds is the measured recovery time: the sum of the phases,
	// checks included, since a recovery is not done until the restored
	// copy is known to be good.
	RTOSeconds float64 `json:"rto_seconds"`
	// Recovered is the time of the newest transaction that came back (the
	// last commit replayed, or the snapshot's consistent moment); RPO is
	// the distance from it back to the target.
	Recovered  time.Time `json:"recovered,omitzero"`
	RPOSeconds float64   `json:"rpo_seconds"`
	// RTOTargetSeconds and RPOTargetSeconds are the tier's objectives (0
	// when the asset has no tier).
	RTOTargetSeconds float64 `json:"rto_target_seconds,omitempty"`
	RPOTargetSeconds float64 `json:"rpo_target_seconds,omitempty"`
	RTOMet           *bool   `json:"rto_met,omitempty"`
	RPOMet           *bool   `json:"rpo_met,omitempty"`
	// Bytes is how much the restore wrote; WALFiles how many WAL segments
	// recovery read, from the snapshot's start to the last record replayed.
	Bytes    int64   `json:"bytes"`
	WALFiles int     `json:"wal_files,omitempty"`
	Checks   []Check `json:"checks"`
	Passed   bool    `json:"passed"`
	// Aborted marks a drill stopped before it finished (an operator's
	// stop, a shutdown of the daemon): it neither passed nor failed, and
	// counts as neither.
	Aborted bool `json:"aborted,omitempty"`
	// Error is why the drill failed, on one line; "" when it passed.
	Error string `json:"error,omitempty"`
	// Issues lists every problem found (a failed check, a missed
	// objective, the error), for the report's "issues found" column.
	Issues []string `json:"issues,omitempty"`
}

// Phase is one timed step of a drill.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Check is the outcome of one integrity check or validation query.
type Check struct {
	Name string `json:"name"`
	// Type is "integrity" (pg_amcheck, integrity_check, fsck, sizes) or
	// "query" (a validation query of the policy).
	Type     string  `json:"type"`
	Expect   string  `json:"expect,omitempty"`
	Got      string  `json:"got,omitempty"`
	Passed   bool    `json:"passed"`
	Detail   string  `json:"detail,omitempty"`
	Seconds  float64 `json:"seconds"`
	Database string  `json:"database,omitempty"`
}

// Check types.
const (
	CheckIntegrity = "integrity"
	CheckQuery     = "query"
)

// Phase returns the seconds spent in the named phase, 0 when it did not
// happen.
func (r *DrillReport) Phase(name string) float64 {
	for _, p := range r.Phases {
		if p.Name == name {
			return p.Seconds
		}
	}
	return 0
}

// Throughput is the restore's rate in bytes per second over the phases
// that moved data (fetch and write), 0 when unknown.
func (r *DrillReport) Throughput() float64 {
	s := r.Phase(PhaseFetch) + r.Phase(PhaseWrite)
	if s <= 0 || r.Bytes <= 0 {
		return 0
	}
	return float64(r.Bytes) / s
}

// Marshal encodes the report as the JSON document that is stored.
func (r *DrillReport) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode drill report %s: %w", r.ID, err)
	}
	return b, nil
}

// Unmarshal decodes a stored report, refusing versions this build does not
// know rather than misreading them.
func Unmarshal(data []byte) (*DrillReport, error) {
	var r DrillReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode drill report: %w", err)
	}
	if r.Version < 1 || r.Version > Version {
		return nil, fmt.Errorf("drill report %s has version %d; this lifeboat reads up to %d", r.ID, r.Version, Version)
	}
	return &r, nil
}
