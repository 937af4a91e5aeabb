package asset

import (
	"context"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Probe outcomes, from the best.
const (
	ProbeOK   = "ok"
	ProbeWarn = "warn"
	ProbeFail = "FAIL"
)

// ProbeServer is the name of the probe that reaches a kind's source:
// when it fails, the source's other probes did not run.
const ProbeServer = "server"

// ProbeArchiving is the name of the probe of a PITR kind's archive
// settings: check turns its failure into a failing wal_lag, since WAL
// that is not archived has no lag to measure.
const ProbeArchiving = "archiving"

// Probe is the outcome of one doctor probe: what was looked at, how it
// fared, and, when it did not pass, the fix.
type Probe struct {
	Asset      string `json:"asset,omitempty"`
	Repository string `json:"repository,omitempty"`
	Name       string `json:"probe"`
	Status     string `json:"status"` // ProbeOK, ProbeWarn or ProbeFail
	Message    string `json:"message"`
	Fix        string `json:"fix,omitempty"`
}

// Doctor is a kind that can probe its source's set-up: what a backup,
// the archiving between backups and a restore depend on.
type Doctor interface {
	Kind
	Probes(ctx context.Context, d *DoctorRun) []Probe
}

// DoctorRun is what a kind's probes are given.
type DoctorRun struct {
	Asset *policy.Asset
	// PolicyPath is the policy file in use; Secrets are the files the
	// source's own calls into Lifeboat read besides it (key files).
	PolicyPath string
	Secrets    []string
	// Repos are the asset's repositories, the primary first; a nil Repo
	// could not be opened (its probe failed already).
	Repos []DoctorRepo
	// Quick asks for the probes that only read (what check runs): no
	// write to the source, no round trip.
	Quick bool
	// Wait bounds how long a round trip waits for what it sent.
	Wait    time.Duration
	WorkDir string // an empty private directory, removed afterwards
	Log     *slog.Logger
}

// DoctorRepo is one repository of an asset being probed.
type DoctorRepo struct {
	Name string
	Repo *repo.Repository
	// Primary is written by the source itself; the others are filled
	// by lifeboat copy.
	Primary bool
}
