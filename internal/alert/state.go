package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
)

// stateVersion is the format of the state file; a file of another version
// is refused rather than misread.
const stateVersion = 1

// state is what the Notifier remembers between Updates and across
// restarts: every problem that is open, or closed but not yet resolved at
// every destination that got it.
type state struct {
	Version  int                      `json:"version"`
	Problems map[string]*problemState `json:"problems"`
}

type problemState struct {
	Problem Problem   `json:"problem"`
	Since   time.Time `json:"since"`
	// Open is false once the problem left the set; it stays in the state
	// until every destination in Sent has taken the resolve.
	Open       bool      `json:"open"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// Sent holds, per destination, the last trigger it took. A
	// destination is absent until a trigger succeeds, and removed once
	// a resolve does.
	Sent map[string]sentState `json:"sent,omitempty"`
}

type sentState struct {
	At    time.Time `json:"at"`
	Count int       `json:"count"` // triggers taken, the first and the repeats
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Version: stateVersion, Problems: map[string]*problemState{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alert state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("alert state %s is damaged (%v); remove it to start afresh: open problems are then sent again and problems that cleared meanwhile are never resolved", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("alert state %s has version %d; this lifeboat reads version %d", path, st.Version, stateVersion)
	}
	if st.Problems == nil {
		st.Problems = map[string]*problemState{}
	}
	for k, ps := range st.Problems {
		if ps == nil {
			delete(st.Problems, k)
		}
	}
	return &st, nil
}

// saveState replaces the file at path whole: written and synced under a
// temporary name, renamed over the old one, the directory synced. A crash
// leaves the old state or the new one, never a mix.
func saveState(path string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode alert state: %w", err)
	}
	b = append(b, '\n')
	if err := durable.Replace(path, b, 0o600); err != nil {
		return fmt.Errorf("write alert state %s: %w", path, err)
	}
	return nil
}
