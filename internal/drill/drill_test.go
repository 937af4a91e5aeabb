package drill

import (
	"context"
	"errors"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// stopKind's drill is stopped (stop, as by an operator's SIGTERM) while
// its validation queries run, or after they ran when late is set; the
// queries fail as a cancelled query does, and the kind returns no error.
type stopKind struct {
	stop context.CancelFunc
	late bool
}

func (stopKind) Name() lifeboat.AssetKind { return "fake" }

func (stopKind) Backup(context.Context, *asset.Backup) (*repo.Snapshot, error) {
	return nil, errors.New("not for backups")
}

func (stopKind) RestoreFlags() []asset.Flag { return nil }

func (stopKind) Restore(context.Context, *asset.Restore) (*asset.Restored, error) {
	return nil, errors.New("not for restores")
}

type querierFunc func(ctx context.Context) (string, bool, error)

func (f querierFunc) QueryValue(ctx context.Context, _, _ string) (string, bool, error) {
	return f(ctx)
}

func (k stopKind) Drill(ctx context.Context, d asset.Drill) error {
	if !k.late {
		k.stop()
	}
	d.Queries(ctx, func(string) string { return "" }, querierFunc(func(ctx context.Context) (string, bool, error) {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		return "t", false, nil
	}))
	d.Phase(evidence.PhaseChecks)
	if k.late {
		k.stop()
	}
	return nil
}

// TestStopDuringChecksAborts: checks cut short by a stop fail without an
// error from the kind; the drill is aborted (neither passed nor failed),
// while one stopped only after everything passed has passed.
func TestStopDuringChecksAborts(t *testing.T) {
	t.Parallel()
	for _, late := range []bool{false, true} {
		ctx, cancel := context.WithCancel(t.Context())
		rep, err := Run(ctx, Options{
			Kind:    stopKind{stop: cancel, late: late},
			Asset:   &policy.Asset{Name: "db", Kind: "fake"},
			Checks:  []policy.ValidationQuery{{Name: "rows", SQL: "select true", Expect: policy.Expectation{Kind: policy.ExpectTrue}}},
			WorkDir: t.TempDir(),
		})
		cancel()
		if rep == nil {
			t.Fatalf("late %v: no report: %v", late, err)
		}
		if late {
			if err != nil || !rep.Passed || rep.Aborted {
				t.Errorf("stopped after passing: err %v, passed %v, aborted %v", err, rep.Passed, rep.Aborted)
			}
			continue
		}
		if err == nil || !errors.Is(err, context.Canceled) || !rep.Aborted || rep.Passed {
			t.Errorf("stopped during the checks: err %v, passed %v, aborted %v (%s)", err, rep.Passed, rep.Aborted, rep.Error)
		}
	}
}
