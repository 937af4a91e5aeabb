package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// walHorizon is expire's record of where the continuous archive begins:
// gaps below it are what retention removed, not damage.
type walHorizon struct {
	Created time.Time `json:"created"`
	FromSeg uint64    `json:"from_segment"`
}

const horizonRel = "wal-horizon"

// SnapshotPoint orders a snapshot for retention by the moment it is
// consistent at (the server's clock at pg_backup_stop) and its timeline.
func (kind) SnapshotPoint(s *repo.Snapshot) (time.Time, uint32, error) {
	info, err := Info(s)
	if err != nil {
		return time.Time{}, 0, err
	}
	return info.StopTime, info.Timeline, nil
}

// ExpireArchive deletes the WAL files of the asset name that no kept
// snapshot needs: below the start of the window's base (or of the newest
// kept snapshot), only the segments from each kept snapshot's start to its
// stop stay. Timeline history files always stay. It returns the ranges in
// archive order.
func (kind) ExpireArchive(ctx context.Context, r *repo.Repository, name string, opts asset.ArchiveExpiry) ([]asset.ArchiveRange, error) {
	ident, err := LoadIdentity(ctx, r, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	seg := ident.WALSegmentSize
	if len(opts.Kept) == 0 {
		return nil, fmt.Errorf("expire WAL of %s: no snapshot is kept, refusing to judge the archive", name)
	}
	from := opts.Base
	if from == nil {
		from = opts.Kept[len(opts.Kept)-1]
	}
	fromInfo, err := Info(from)
	if err != nil {
		return nil, err
	}
	cutoff := SegmentForLSN(fromInfo.StartLSN, seg)
	type need struct {
		first, last uint64
		tli         uint32
		id          repo.ID
	}
	var needs []need
	for _, s := range opts.Kept {
		info, err := Info(s)
		if err != nil {
			return nil, err
		}
		needs = append(needs, need{SegmentForLSN(info.StartLSN, seg), SegmentForLSN(info.StopLSN, seg), info.Timeline, s.ID})
	}
	var files []WALName
	if err := r.ListNamed(ctx, walArea, name, "", func(rel string, _ int64) error {
		n, err := ParseWALFileName(rel[strings.LastIndex(rel, "/")+1:], seg)
		if err != nil || n.Kind == WALHistory {
			return nil
		}
		files = append(files, n)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list WAL of %s: %w", name, err)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].TLI != files[j].TLI {
			return files[i].TLI < files[j].TLI
		}
		return files[i].String() < files[j].String()
	})
	ret, _ := r.Backend().(storage.Retainer)
	var out []asset.ArchiveRange
	for _, f := range files {
		keep, rule := false, "older than every kept snapshot needs"
		var until time.Time
		if f.SegNo >= cutoff {
			keep = true
			rule = "after the start of snapshot " + from.ID.Short()
			if opts.Base != nil {
				rule = "pitr window (from snapshot " + from.ID.Short() + ")"
			}
		} else {
			for _, n := range needs {
				if f.TLI == n.tli && f.SegNo >= n.first && f.SegNo <= n.last {
					keep, rule = true, "consistency of snapshot "+n.id.Short()
					if u := opts.KeepUntil[n.id]; u.After(until) {
						until = u
					}
				}
			}
		}
		if len(out) == 0 || out[len(out)-1].Timeline != f.TLI || out[len(out)-1].Keep != keep || out[len(out)-1].Rule != rule {
			out = append(out, asset.ArchiveRange{Timeline: f.TLI, First: f.String(), Keep: keep, Rule: rule})
		}
		cur := &out[len(out)-1]
		cur.Last = f.String()
		cur.Files++
		if opts.DryRun {
			continue
		}
		if keep {
			if ret != nil && !until.IsZero() {
				if err := ret.ExtendRetention(ctx, r.NamedObject(walArea, name, walRel(f)), until); err != nil {
					return out, fmt.Errorf("extend retention of WAL %s: %w", f, err)
				}
			}
			continue
		}
		err := r.DeleteNamed(ctx, walArea, name, walRel(f))
		var re *storage.RetainedError
		switch {
		case err == nil || errors.Is(err, storage.ErrNotFound):
			cur.Deleted++
		case errors.As(err, &re):
			if re.Until.After(cur.Until) {
				cur.Until = re.Until
			}
		default:
			return out, fmt.Errorf("expire WAL %s of %s: %w", f, name, err)
		}
	}
	if !opts.DryRun {
		payload, err := json.Marshal(walHorizon{Created: r.Clock().UTC(), FromSeg: cutoff})
		if err != nil {
			return out, err
		}
		rel := fmt.Sprintf("%s/%020d", horizonRel, r.Clock().UnixNano())
		if _, err := r.PutNamed(ctx, "meta", name, rel, payload, repo.CodecZstd); err != nil {
			return out, fmt.Errorf("record WAL horizon of %s: %w", name, err)
		}
	}
	return out, nil
}

// walHorizonSeg returns the segment from which on the archive of asset
// must be continuous, as the latest expire recorded it (0: from the start).
func walHorizonSeg(ctx context.Context, r *repo.Repository, asset string) (uint64, error) {
	var last string
	if err := r.ListNamed(ctx, "meta", asset, horizonRel+"/", func(rel string, _ int64) error {
		last = rel
		return nil
	}); err != nil {
		return 0, err
	}
	if last == "" {
		return 0, nil
	}
	data, err := r.GetNamed(ctx, "meta", asset, last)
	if err != nil {
		return 0, err
	}
	var h walHorizon
	if err := json.Unmarshal(data, &h); err != nil {
		return 0, fmt.Errorf("parse %s of %s: %v: %w", last, asset, err, repo.ErrCorrupt)
	}
	return h.FromSeg, nil
}
