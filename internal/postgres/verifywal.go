package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// WALReport is what VerifyWAL found for one asset.
type WALReport struct {
	Asset     string
	Files     int
	Timelines []uint32
	Problems  []string
}

// VerifyWAL checks an asset's archive: no segment missing between the
// first and the last of each timeline, every snapshot's WAL present, and
// with readData every file opening cleanly (segments with this cluster's
// header and the right position).
func VerifyWAL(ctx context.Context, r *repo.Repository, asset string, readData bool) (*WALReport, error) {
	rep := &WALReport{Asset: asset}
	ident, err := LoadIdentity(ctx, r, asset)
	if errors.Is(err, storage.ErrNotFound) {
		return rep, nil // nothing archived for this asset yet
	}
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return rep, nil
	}
	seg := ident.WALSegmentSize
	var rels []string
	if err := r.ListNamed(ctx, walArea, asset, "", func(rel string, _ int64) error {
		rels = append(rels, rel)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list WAL of %s: %w", asset, err)
	}
	rep.Files = len(rels)
	segs, err := archivedSegments(ctx, r, asset, seg)
	if err != nil {
		return nil, err
	}
	horizon, err := walHorizonSeg(ctx, r, asset)
	if err != nil {
		return nil, fmt.Errorf("WAL horizon of %s: %w", asset, err)
	}
	for tli, list := range segs {
		rep.Timelines = append(rep.Timelines, tli)
		for i := 1; i < len(list); i++ {
			// Below the horizon expire kept only what each snapshot needs.
			if list[i] != list[i-1]+1 && list[i] > horizon {
				from := SegmentName(tli, list[i-1]+1, seg)
				to := SegmentName(tli, list[i]-1, seg)
				rep.Problems = append(rep.Problems, fmt.Sprintf("asset %s timeline %d: WAL segments %s to %s are missing (%d segments)",
					asset, tli, from, to, list[i]-list[i-1]-1))
			}
		}
	}
	sort.Slice(rep.Timelines, func(i, j int) bool { return rep.Timelines[i] < rep.Timelines[j] })
	snaps, err := r.Snapshots(ctx, asset)
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	for _, s := range snaps {
		info, err := Info(s)
		if err != nil {
			continue
		}
		if err := CheckWALRange(ctx, r, asset, info.Timeline, info.StartLSN, info.StopLSN, info.WALSegmentSize); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("snapshot %s (%s): %v", s.ID.Short(), asset, err))
		}
	}
	if readData {
		for _, rel := range rels {
			if p := checkWALFile(ctx, r, asset, rel, ident); p != "" {
				rep.Problems = append(rep.Problems, p)
			}
		}
	}
	return rep, nil
}

func checkWALFile(ctx context.Context, r *repo.Repository, asset, rel string, ident *Identity) string {
	name := "wal/" + asset + "/" + rel
	data, err := r.GetNamed(ctx, walArea, asset, rel)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	base := rel[strings.LastIndex(rel, "/")+1:]
	n, err := ParseWALFileName(base, ident.WALSegmentSize)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if n.Kind != WALSegment && n.Kind != WALPartial {
		return ""
	}
	h, err := ParseSegmentHeader(data)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if err := h.CheckName(n); err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if fmt.Sprint(h.SystemID) != ident.SystemID {
		return fmt.Sprintf("%s: segment of system %d, asset belongs to %s", name, h.SystemID, ident.SystemID)
	}
	return ""
}
