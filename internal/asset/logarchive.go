package asset

import (
	"context"
	"os"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// LogArchiver is the capability of kinds whose source hands its log files
// to a command one at a time (postgres: archive_command running
// lifeboat wal-push), so that lifeboat serve can archive them for that
// command with the repository it keeps open.
type LogArchiver interface {
	Kind
	// ArchiveLog stores the log file called name, open as f (read from
	// its start), of asset in r, returning only once it is durable; with
	// every rule of the kind's archive (an identical file again succeeds,
	// different content or another source is refused). stored, when not
	// nil, is given each object stored (for the copy queues).
	ArchiveLog(ctx context.Context, r *repo.Repository, asset, name string, f *os.File, stored func(name string, data []byte) error) (ArchivedLog, error)
}

// ArchivedLog is what ArchiveLog did.
type ArchivedLog struct {
	Bytes   int
	Existed bool // already archived with identical content
	// Alternate is the storage name the file went to because its own was
	// taken by an object that does not authenticate; "" otherwise.
	Alternate string
}
