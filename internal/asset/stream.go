package asset

import (
	"context"
	"log/slog"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Streamer is the capability of kinds that can send an asset's changes to
// its repository continuously rather than per backup (postgres: WAL over
// a replication slot).
type Streamer interface {
	Kind
	// Streams reports whether the policy turns streaming on for a.
	Streams(a *policy.Asset) bool
	// Stream runs until ctx ends, reconnecting to the source as needed;
	// it returns early only on an error reconnecting cannot cure.
	Stream(ctx context.Context, s *Stream) error
	// StreamState reads the stream's slot on the source (check).
	StreamState(ctx context.Context, a *policy.Asset) *StreamState
}

// Stream is one asset's stream: where it goes and where it may keep
// local state.
type Stream struct {
	Asset *policy.Asset
	Repo  *repo.Repository
	// StateDir is a directory of this asset's own for the stream's
	// transient files.
	StateDir string
	Log      *slog.Logger
	// Stored, when not nil, receives each object stored (the copy queues).
	Stored func(name string, data []byte) error
}

// StreamState is what the source says of a stream's slot, for check.
type StreamState struct {
	Slot   string
	Exists bool
	Active bool // a stream is connected to the slot
	// WALStatus is PostgreSQL's pg_replication_slots.wal_status
	// (reserved, extended, unreserved, lost).
	WALStatus string
	// RetainedBytes is the WAL the slot holds back in pg_wal.
	RetainedBytes int64
	// SafeBytes is what may still be written before the slot loses WAL
	// to max_slot_wal_keep_size; nil when that setting is unlimited.
	SafeBytes *int64
	// MaxRetained is the policy's threshold for RetainedBytes.
	MaxRetained int64
	// Error says why the state could not be read.
	Error string
}
