package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// sqlArchiverState reads what the archiver last did: a failure later
// than the last success means it is failing now.
const sqlArchiverState = `select coalesce(last_archived_wal, ''), last_archived_time, coalesce(last_failed_wal, ''), last_failed_time from pg_stat_archiver`

// archivePoll is how often the end-of-backup wait looks at the repository
// and the archiver.
const archivePoll = 250 * time.Millisecond

// lastSegment is the segment holding the last byte of WAL from start to
// stop: a stop on a segment boundary needs nothing of the next segment.
func lastSegment(start, stop lifeboat.LSN, segSize uint64) uint64 {
	last := SegmentForLSN(stop, segSize)
	if stop > start && uint64(stop)%segSize == 0 {
		last--
	}
	return last
}

// waitArchived waits, after pg_backup_stop(wait_for_archive => false), for
// the backup's last segment to reach this repository. pg_backup_stop's own
// wait is silent and only ends with a warning every minute; this one says
// how long it has waited, gives up as soon as the archiver reports a
// failure on that segment (or an earlier one: the archiver goes in order),
// and at ArchiveTimeout.
func (b *backup) waitArchived(ctx context.Context, conn *pgx.Conn, tli uint32, stop lifeboat.LSN) error {
	seg := b.si.WALSegmentSize
	n := WALName{Kind: WALSegment, TLI: tli, SegNo: lastSegment(b.startLSN, stop, seg), SegSize: seg}
	name := n.String()
	began := time.Now()
	for {
		ok, err := b.r.HasNamed(ctx, walArea, b.opts.Asset, walRel(n))
		if err != nil {
			return fmt.Errorf("wait for WAL segment %s: %w", name, err)
		}
		if ok {
			if waited := time.Since(began); waited > time.Second {
				b.log.Info("backup's last WAL segment archived", "asset", b.opts.Asset, "segment", name, "waited", waited.Round(time.Millisecond).String())
			}
			return nil
		}
		var archived, failed string
		var archivedAt, failedAt *time.Time
		if err := conn.QueryRow(ctx, sqlArchiverState).Scan(&archived, &archivedAt, &failed, &failedAt); err != nil {
			return fmt.Errorf("wait for WAL segment %s: read pg_stat_archiver: %w", name, err)
		}
		failing := failedAt != nil && (archivedAt == nil || failedAt.After(*archivedAt))
		if failing && failed != "" && !AfterSegment(failed, name) {
			return fmt.Errorf("the archiver failed on WAL segment %s at %s while the backup waited for %s, so the backup cannot be completed; the server log says why, and running archive_command by hand as the server's user shows it (it should be archive_command = '%s'): %w",
				failed, lifeboat.FormatTime(*failedAt), name, archiveCommand(b.opts), ErrArchiving)
		}
		waited := time.Since(began)
		if waited >= b.opts.ArchiveTimeout {
			return fmt.Errorf("WAL segment %s, the last the backup needs, was not archived into %s within %s (--archive-timeout; the archiver last archived %q); check archive_command and the server log: %w",
				name, b.r.Location(), b.opts.ArchiveTimeout, archived, ErrArchiving)
		}
		if b.opts.Progress != nil {
			p := b.progress()
			p.WaitingForWAL, p.Waited = name, waited
			b.opts.Progress(p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(archivePoll):
		}
	}
}
