package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	assetpkg "github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Window is what an asset's repository can restore on one timeline: from
// the moment its oldest usable snapshot is consistent to the last moment
// the archive reaches without a gap after its newest snapshot.
type Window struct {
	Timeline uint32 `json:"timeline"`
	// Snapshots counts the timeline's snapshots whose own WAL is archived.
	Snapshots int `json:"snapshots"`
	// EarliestSnapshot is the oldest of them; a restore can reach nothing
	// before EarliestTime (EarliestLSN).
	EarliestSnapshot string       `json:"earliest_snapshot"`
	EarliestTime     time.Time    `json:"earliest_time"`
	EarliestLSN      lifeboat.LSN `json:"earliest_lsn"`
	// NewestTime is when the newest of them is consistent.
	NewestTime time.Time `json:"newest_snapshot_time"`
	// LatestWAL is the last segment archived without a gap after the
	// newest snapshot.
	LatestWAL string `json:"latest_wal"`
	// LatestTime and LatestLSN are the newest commit (or abort) in that
	// WAL as pg_waldump reads it, when LatestExact: a restore can stop at
	// any time before it and at any LSN up to it. Otherwise they are
	// bounds: when the store received the last segment, and its end.
	LatestLSN   lifeboat.LSN `json:"latest_lsn"`
	LatestTime  time.Time    `json:"latest_time"`
	LatestExact bool         `json:"latest_exact"`
	// LatestXID is the newest transaction whose end is in that WAL; 0 when
	// pg_waldump could not read it.
	LatestXID uint64 `json:"latest_xid,omitempty"`
	// Gap names the first segment missing after the newest snapshot while
	// later ones are archived; recovery stops there.
	Gap string `json:"gap,omitempty"`
}

// Windows reads the restorable window of every timeline of asset in r,
// given its snapshots there (snaps). pg_waldump of the snapshots' major
// version reads the newest commit when it is installed; work holds the
// segments it reads ("" for the system's temporary directory).
func Windows(ctx context.Context, r *repo.Repository, asset string, snaps []*repo.Snapshot, work string) ([]Window, error) {
	byTLI := map[uint32][]*SnapshotInfo{}
	ids := map[*SnapshotInfo]string{}
	var segSize uint64
	for _, s := range snaps {
		info, err := Info(s)
		if err != nil {
			continue
		}
		byTLI[info.Timeline] = append(byTLI[info.Timeline], info)
		ids[info] = s.ID.String()
		segSize = info.WALSegmentSize
	}
	if len(byTLI) == 0 {
		return nil, nil
	}
	segs, times, err := archivedSegmentTimes(ctx, r, asset, segSize)
	if err != nil {
		return nil, err
	}
	var out []Window
	for tli, infos := range byTLI {
		sort.Slice(infos, func(i, j int) bool { return infos[i].StopLSN < infos[j].StopLSN })
		have := map[uint64]bool{}
		for _, s := range segs[tli] {
			have[s] = true
		}
		w := Window{Timeline: tli}
		var newest *SnapshotInfo
		for _, info := range infos {
			if !haveRange(have, info, segSize) {
				continue
			}
			w.Snapshots++
			if w.EarliestSnapshot == "" {
				w.EarliestSnapshot, w.EarliestTime, w.EarliestLSN = ids[info], info.StopTime.UTC(), info.StopLSN
			}
			newest = info
		}
		if newest == nil {
			continue
		}
		w.NewestTime = newest.StopTime.UTC()
		// From the newest snapshot's last segment on, as far as the
		// archive runs without a gap.
		last := SegmentForLSN(newest.StopLSN, segSize)
		for have[last+1] {
			last++
		}
		for _, s := range segs[tli] {
			if s > last+1 {
				w.Gap = SegmentName(tli, last+1, segSize)
				break
			}
		}
		w.LatestWAL = SegmentName(tli, last, segSize)
		w.LatestLSN = lifeboat.LSN((last + 1) * segSize)
		w.LatestTime = times[w.LatestWAL].UTC()
		from := SegmentForLSN(newest.StopLSN, segSize)
		var names []string
		for s := from; s <= last; s++ {
			names = append(names, SegmentName(tli, s, segSize))
		}
		if c, ok := newestCommit(ctx, r, asset, newest.PGVersion/10000, names, work); ok {
			w.LatestTime, w.LatestLSN, w.LatestXID, w.LatestExact = c.time, c.lsn, c.xid, true
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Timeline < out[j].Timeline })
	return out, nil
}

// haveRange reports whether every segment from a snapshot's start to its
// stop is archived.
func haveRange(have map[uint64]bool, info *SnapshotInfo, segSize uint64) bool {
	for s := SegmentForLSN(info.StartLSN, segSize); s <= SegmentForLSN(info.StopLSN, segSize); s++ {
		if !have[s] {
			return false
		}
	}
	return true
}

// archivedSegmentTimes lists the archived segments per timeline, and when
// the store received each (by file name).
func archivedSegmentTimes(ctx context.Context, r *repo.Repository, asset string, segSize uint64) (map[uint32][]uint64, map[string]time.Time, error) {
	segs := map[uint32][]uint64{}
	times := map[string]time.Time{}
	err := r.ListNamedInfo(ctx, walArea, asset, "", func(rel string, oi storage.ObjectInfo) error {
		base := rel[strings.LastIndex(rel, "/")+1:]
		n, err := ParseWALFileName(base, segSize)
		if err != nil || n.Kind != WALSegment {
			return nil
		}
		segs[n.TLI] = append(segs[n.TLI], n.SegNo)
		times[base] = oi.ModTime
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list WAL of %s: %w", asset, err)
	}
	for _, l := range segs {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	return segs, times, nil
}

// transactionEnd finds the end of a transaction in pg_waldump's output:
// its xid, the record's LSN, and the timestamp of its commit or abort.
var transactionEnd = regexp.MustCompile(`tx:\s+(\d+), lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// commit is the newest end of a transaction found in the WAL.
type commit struct {
	time time.Time
	lsn  lifeboat.LSN
	xid  uint64
}

// maxSegmentsRead bounds how many segments, newest first, are read to find
// the newest commit; a quiet server may archive many without one.
const maxSegmentsRead = 8

// newestCommit reads segs (oldest first) newest first with pg_waldump of
// the given major version until one holds the end of a transaction, and
// returns the newest; ok is false when pg_waldump is not installed or
// none was found.
func newestCommit(ctx context.Context, r *repo.Repository, asset string, major int, segs []string, work string) (c commit, ok bool) {
	bin, err := pgbin.Find(ctx, major)
	if err != nil {
		return c, false
	}
	dir, err := os.MkdirTemp(work, "waldump-")
	if err != nil {
		return c, false
	}
	defer os.RemoveAll(dir)
	for i := len(segs) - 1; i >= 0 && i >= len(segs)-maxSegmentsRead; i-- {
		dest := filepath.Join(dir, segs[i])
		if err := FetchWAL(ctx, r, asset, segs[i], dest); err != nil {
			return c, false
		}
		cmd := (*pgbin.User)(nil).Command(ctx, bin.Path("pg_waldump"), "--rmgr=Transaction", dest)
		cmd.Env = append(cmd.Env, "TZ=UTC")
		// pg_waldump exits non-zero at the end of what it can read (the
		// next segment is not there); the records it printed are good.
		out, _ := cmd.Output()
		os.Remove(dest)
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			m := transactionEnd.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			t, err := time.Parse("2006-01-02 15:04:05.999999999", m[3])
			if err != nil {
				continue
			}
			lsn, err := lifeboat.ParseLSN(m[2])
			if err != nil {
				continue
			}
			xid, _ := strconv.ParseUint(m[1], 10, 64)
			// Records come in LSN order: the last one read is the newest.
			c = commit{time: t.UTC(), lsn: lsn, xid: max(c.xid, xid)}
		}
		if !c.time.IsZero() {
			return c, true
		}
	}
	return c, false
}

// Reachable says why target cannot be reached within w, or "" when it
// can: PostgreSQL stops at a time only on a later commit, and at an LSN or
// a transaction only once it has read that far.
func (w *Window) Reachable(t Target) string {
	at := func() string {
		how := "the newest commit in the archive"
		if !w.LatestExact {
			how = "when the last segment was archived"
		}
		reach := fmt.Sprintf("the archive of timeline %d reaches %s (LSN %s, %s; segment %s)", w.Timeline,
			lifeboat.FormatPreciseTime(w.LatestTime), w.LatestLSN, how, w.LatestWAL)
		if w.Gap != "" {
			reach += fmt.Sprintf(", where it stops: segment %s is missing while later ones are archived", w.Gap)
		}
		return reach
	}
	switch {
	case t.Time != nil && !t.Time.Before(w.LatestTime):
		// Recovery to a time stops at the first commit after it.
		return fmt.Sprintf("--time %s is not before the newest commit that can be restored: %s; to restore everything the archive holds, give no target", lifeboat.FormatPreciseTime(*t.Time), at())
	case t.LSN != nil && *t.LSN > w.LatestLSN:
		return fmt.Sprintf("--lsn %s lies beyond the archived WAL: %s", t.LSN, at())
	case t.XID != nil && w.LatestXID != 0 && *t.XID > w.LatestXID:
		return fmt.Sprintf("--xid %d is newer than any transaction that ended in the archive (newest %d): %s", *t.XID, w.LatestXID, at())
	}
	return ""
}

// Windows is asset.PITR's view of Windows.
func (kind) Windows(ctx context.Context, r *repo.Repository, asset string, snaps []*repo.Snapshot, work string) ([]assetpkg.RecoveryWindow, error) {
	ws, err := Windows(ctx, r, asset, snaps, work)
	if err != nil {
		return nil, err
	}
	out := make([]assetpkg.RecoveryWindow, len(ws))
	for i, w := range ws {
		out[i] = assetpkg.RecoveryWindow{Timeline: w.Timeline, Snapshots: w.Snapshots, EarliestSnapshot: w.EarliestSnapshot,
			EarliestTime: w.EarliestTime, EarliestPosition: w.EarliestLSN.String(), LatestTime: w.LatestTime, LatestExact: w.LatestExact,
			LatestPosition: w.LatestLSN.String(), LatestLog: w.LatestWAL, Gap: w.Gap}
	}
	return out, nil
}

// RestorePoints lists the restore points recorded for asset in r, oldest
// first.
func (kind) RestorePoints(ctx context.Context, r *repo.Repository, asset string) ([]assetpkg.RestorePoint, error) {
	var rels []string
	if err := r.ListNamed(ctx, "restorepoints", asset, "", func(rel string, _ int64) error {
		rels = append(rels, rel)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list restore points of %s: %w", asset, err)
	}
	var out []assetpkg.RestorePoint
	for _, rel := range rels {
		name, err := hex.DecodeString(rel)
		if err != nil {
			continue // not a name this package wrote
		}
		rp, err := LoadRestorePoint(ctx, r, asset, string(name))
		if err != nil {
			return nil, err
		}
		out = append(out, assetpkg.RestorePoint{Name: rp.Name, LSN: rp.LSN.String(), Time: rp.Time.UTC(), Timeline: rp.Timeline})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// ErrUnreachable is returned (wrapped) when a restore target lies outside
// what the repository can restore.
var ErrUnreachable = errors.New("the target cannot be reached")

// checkReachable refuses, before anything is written, a target the
// repository cannot reach from the snapshot chosen: a restore point never
// recorded, or a time, LSN or transaction beyond the archived WAL (the
// server would replay everything and then stop, "recovery ended before
// configured recovery target was reached"). A history that goes on to a
// later timeline is left to the server to judge.
func checkReachable(ctx context.Context, r *repo.Repository, asset string, t Target, info *SnapshotInfo) error {
	if t.Name != "" {
		_, err := LoadRestorePoint(ctx, r, asset, t.Name)
		if errors.Is(err, storage.ErrNotFound) {
			var names []string
			points, lerr := kind{}.RestorePoints(ctx, r, asset)
			if lerr != nil {
				return lerr
			}
			for _, p := range points {
				names = append(names, strconv.Quote(p.Name))
			}
			recorded := "none is recorded"
			if len(names) > 0 {
				recorded = "recorded: " + strings.Join(names, ", ")
			}
			return fmt.Errorf("restore point %q was never recorded for %s in %s (%s; `lifeboat restore-point %s NAME` records one): %w",
				t.Name, asset, r.Location(), recorded, asset, ErrUnreachable)
		}
		return err
	}
	segs, err := archivedSegments(ctx, r, asset, info.WALSegmentSize)
	if err != nil {
		return err
	}
	for tli := range segs {
		if tli > info.Timeline {
			return nil
		}
	}
	snaps, err := r.Snapshots(ctx, asset)
	if err != nil {
		return err
	}
	windows, err := Windows(ctx, r, asset, snaps, "")
	if err != nil {
		return err
	}
	for i := range windows {
		if w := &windows[i]; w.Timeline == info.Timeline {
			if why := w.Reachable(t); why != "" {
				return fmt.Errorf("restore of %s: %s: %w", asset, why, ErrUnreachable)
			}
		}
	}
	return nil
}
