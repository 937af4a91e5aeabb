// Package lifeboat holds the domain vocabulary shared by every other package:
// asset kinds, service tiers, snapshot identity and PostgreSQL positions. It
// imports the standard library only, so that nothing here drags in storage,
// PostgreSQL or the CLI.
package lifeboat

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AssetKind says what an asset is and so which source backs it up.
type AssetKind string

// The asset kinds Lifeboat knows.
const (
	KindPostgres AssetKind = "postgres" // a cluster: physical backups and WAL
	KindPGDump   AssetKind = "pg_dump"  // logical dumps of databases
	KindSQLite   AssetKind = "sqlite"
	KindFiles    AssetKind = "files"
	KindGit      AssetKind = "git"
)

// Tier is a service tier: the recovery objectives its assets are held to.
type Tier struct {
	Name string
	RPO  time.Duration // most data, measured in time, that a recovery may lose
	RTO  time.Duration // longest a recovery may take
}

// SnapshotType tells a full backup from an incremental one.
type SnapshotType string

// Snapshot types.
const (
	SnapshotFull        SnapshotType = "full"
	SnapshotIncremental SnapshotType = "incr"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// String formats the LSN the way PostgreSQL does ("16/B374D848").
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// ParseLSN parses PostgreSQL's "hi/lo" hexadecimal notation.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q: want the form 16/B374D848", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// MarshalText makes LSNs readable in JSON manifests and listings.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// TimeLayout is how every command and the report write a moment for
// people: UTC, to the second, and readable back by --time.
const TimeLayout = "2006-01-02 15:04:05 UTC"

// PreciseTimeLayout is TimeLayout to the microsecond, for the moments an
// operator pastes into --time (the ends of a recovery window, restore
// points), where a rounded second could fall outside the window.
const PreciseTimeLayout = "2006-01-02 15:04:05.000000 UTC"

// FormatTime writes t in TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// FormatPreciseTime writes t in PreciseTimeLayout.
func FormatPreciseTime(t time.Time) string { return t.UTC().Format(PreciseTimeLayout) }
