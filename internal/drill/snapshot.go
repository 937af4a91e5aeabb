package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// pickSnapshot chooses the snapshot a drill of a kind without WAL
// restores: the one named, the newest, or a random one (every snapshot
// kept must restore, not only the newest). Its time is the drill's target
// and what came back: such a snapshot is one moment.
func (d *drill) PickSnapshot(ctx context.Context) (*repo.Snapshot, error) {
	o, r := d.o, d.rep
	if r.Point == asset.PointSnapshot {
		s, err := o.Repo.FindSnapshot(ctx, o.Snapshot)
		if err != nil {
			return nil, err
		}
		if s.Asset != o.Asset.Name {
			return nil, fmt.Errorf("snapshot %s belongs to asset %s, not %s", s.ID.Short(), s.Asset, o.Asset.Name)
		}
		return d.useSnapshot(s), nil
	}
	snaps, err := o.Repo.Snapshots(ctx, o.Asset.Name)
	if err != nil {
		return nil, err
	}
	var fit []*repo.Snapshot
	for _, s := range snaps {
		if r.Point != asset.PointTime || !s.EndTime.After(o.Time) {
			fit = append(fit, s)
		}
	}
	if len(fit) == 0 {
		if r.Point == asset.PointTime {
			return nil, fmt.Errorf("asset %s has no snapshot taken before %s in %s", o.Asset.Name, o.Time.UTC().Format(time.RFC3339), o.Repo.Location())
		}
		return nil, fmt.Errorf("asset %s has no snapshot in %s", o.Asset.Name, o.Repo.Location())
	}
	pick := fit[0]
	if r.Point == policy.DrillRandom {
		pick = fit[rand.IntN(len(fit))]
	} else {
		for _, s := range fit[1:] {
			if s.EndTime.After(pick.EndTime) {
				pick = s
			}
		}
	}
	return d.useSnapshot(pick), nil
}

func (d *drill) useSnapshot(s *repo.Snapshot) *repo.Snapshot {
	r := d.rep
	r.Snapshot, r.SnapshotTime = s.ID.String(), s.EndTime.UTC()
	r.Recovered = s.StartTime.UTC()
	switch r.Point {
	case asset.PointTime:
		r.Target = d.o.Time.UTC()
	case policy.DrillLatest:
		// As for PostgreSQL: the source fails now, and everything since
		// the snapshot was taken is lost.
		r.Target = d.o.Now().UTC()
	default:
		r.Target = s.StartTime.UTC()
	}
	d.recorded = recordedValues(s)
	return s
}

// recordedValues are the check values a backup recorded in its
// snapshot's details, for "= recorded" expectations.
func recordedValues(s *repo.Snapshot) checkquery.Recorded {
	var rec checkquery.Recorded
	if len(s.Extra) > 0 {
		json.Unmarshal(s.Extra, &rec)
	}
	return rec
}
