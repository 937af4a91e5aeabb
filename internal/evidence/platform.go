package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// PlatformReport is what one platform exercise did and found: every asset
// of the policy (or of a group) drilled in tier order from one
// repository, the member drills' own reports named by ID, and the time
// until each tier was back. It is the seed plans' "full DR failover
// drill".
type PlatformReport struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Group is the policy group exercised; "" for every asset.
	Group string `json:"group,omitempty"`
	// Repository is the repository every asset was drilled from; "" when
	// each was drilled from its own drill repository.
	Repository string `json:"repository,omitempty"`
	// FreshHost says the exercise used only Repository and no local
	// state: the rehearsal of a new host in another region.
	FreshHost bool   `json:"fresh_host"`
	Host      string `json:"host"`
	Trigger   string `json:"trigger"` // manual or schedule
	Parallel  int    `json:"parallel"`
	// WholeTiers says each tier waited for the whole drills of the one
	// before (checks included), not only for their data to be restored.
	WholeTiers bool      `json:"whole_tiers,omitempty"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended"`
	// RTOSeconds is the platform's recovery time: from the start until the
	// last asset was back (its drill ended).
	RTOSeconds float64 `json:"rto_seconds"`
	// RPOSeconds is the worst RPO a member drill measured.
	RPOSeconds float64      `json:"rpo_seconds"`
	Tiers      []TierResult `json:"tiers"`
	Members    []Member     `json:"members"`
	Passed     bool         `json:"passed"`
	Aborted    bool         `json:"aborted,omitempty"`
	// Failed names the assets whose drill failed.
	Failed []string `json:"failed"`
	Error  string   `json:"error,omitempty"`
	Issues []string `json:"issues,omitempty"`
}

// TierResult is one tier of an exercise, in recovery order.
type TierResult struct {
	Tier   string   `json:"tier"` // "" for the assets without one
	Assets []string `json:"assets"`
	// Started and Ended bound the tier's drills: the first began, the
	// last ended.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// RTOSeconds is the time from the exercise's start until every asset
	// of the tier was back, held to RTOTargetSeconds (the tier's rto).
	RTOSeconds       float64 `json:"rto_seconds"`
	RTOTargetSeconds float64 `json:"rto_target_seconds,omitempty"`
	RTOMet           *bool   `json:"rto_met,omitempty"`
	Passed           bool    `json:"passed"`
}

// Member is one asset's drill in an exercise; its full report is the
// drill report Drill names.
type Member struct {
	Asset   string    `json:"asset"`
	Kind    string    `json:"kind"`
	Tier    string    `json:"tier,omitempty"`
	Drill   string    `json:"drill,omitempty"` // the drill report's ID; "" when it never started
	Started time.Time `json:"started"`
	// Restored is when its data was out of the repository (its write
	// phase ended): the next tier may start then. Zero when it never got
	// that far.
	Restored   time.Time `json:"restored,omitzero"`
	Ended      time.Time `json:"ended"`
	RTOSeconds float64   `json:"rto_seconds"`
	RPOSeconds float64   `json:"rpo_seconds"`
	Passed     bool      `json:"passed"`
	Error      string    `json:"error,omitempty"`
}

// PlatformVersion is the version of the PlatformReport this build writes.
const PlatformVersion = 1

// PlatformName is the name platform reports are stored under in a
// repository's drills area: drills/PLATFORM/<id>. Asset names are
// lowercase, so it is never an asset's.
const PlatformName = "PLATFORM"

// Marshal encodes the report as the JSON document that is stored.
func (r *PlatformReport) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode platform exercise %s: %w", r.ID, err)
	}
	return b, nil
}

// UnmarshalPlatform decodes a stored platform report.
func UnmarshalPlatform(data []byte) (*PlatformReport, error) {
	var r PlatformReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode platform exercise: %w", err)
	}
	if r.Version < 1 || r.Version > PlatformVersion {
		return nil, fmt.Errorf("platform exercise %s has version %d; this lifeboat reads up to %d", r.ID, r.Version, PlatformVersion)
	}
	return &r, nil
}

// StorePlatform keeps the report in the repository the exercise drilled
// from, beside its member drills' reports.
func StorePlatform(ctx context.Context, r *repo.Repository, rep *PlatformReport) error {
	doc, err := rep.Marshal()
	if err != nil {
		return err
	}
	if _, err := r.PutNamed(ctx, Area, PlatformName, rep.ID, doc, repo.CodecZstd); err != nil {
		return fmt.Errorf("store platform exercise %s in %s: %w", rep.ID, r.Location(), err)
	}
	return nil
}

// StoredPlatform lists the platform reports a repository holds, oldest
// first.
func StoredPlatform(ctx context.Context, r *repo.Repository) ([]*PlatformReport, error) {
	return stored(ctx, r, PlatformName, "platform exercise", UnmarshalPlatform)
}
