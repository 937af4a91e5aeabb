package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// walBatchDir is where the WAL pushes of the current minute wait to
// become an event.
func walBatchDir(p *policy.Policy) string { return filepath.Join(p.StateDir, "audit") }

// AuditWALPush records one WAL push of asset (file, and pushErr its
// failure) by this process, through the repository r it pushed to. The
// pushes of a minute become one event, recorded (and sealed) by the
// first push of a later minute, or by the audit commands; a failure to
// record is logged, never the push's failure.
func AuditWALPush(ctx context.Context, p *policy.Policy, assetName, repository string, r *repo.Repository, file string, pushErr error, log *slog.Logger, now func() time.Time) {
	actor := audit.PushActor()
	if r != nil {
		actor.Keys = map[string]string{repository: r.KeyName()}
	}
	var svc *Service
	defer func() {
		if svc != nil {
			svc.Close()
		}
	}()
	commit := func(e *audit.Event) error {
		svc = New(p, Options{Log: log, Now: now})
		// The seal goes into the repository wal-push has open: opening it
		// again would derive a passphrase's key again (Argon2id) once a
		// minute, on the archiver's clock.
		if rp, err := p.Repository(repository); err == nil && r != nil {
			defer svc.lend(rp, r)()
		}
		e.Args = []string{"wal-push", assetName}
		svc.recordEvents(ctx, e)
		return nil
	}
	b := audit.OpenWALBatch(walBatchDir(p), assetName)
	if err := b.Push(now(), actor, filepath.Base(file), pushErr, commit); err != nil {
		log.Error("audit: the push is not recorded", "asset", assetName, "file", file, "error", err)
	}
}

// flushWALBatches records the WAL pushes of minutes gone by that no
// later push has recorded yet.
func (s *Service) flushWALBatches(ctx context.Context) error {
	var errs []error
	for _, a := range s.Policy.Assets {
		b := audit.OpenWALBatch(walBatchDir(s.Policy), a.Name)
		err := b.Flush(s.Now(), func(e *audit.Event) error {
			e.Args = []string{"wal-push", a.Name}
			s.recordEvents(ctx, e)
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FlushAudit records the WAL pushes of minutes gone by that no later push
// has recorded (archiving that stopped): lifeboat serve calls it with
// each check, so a quiet asset's last minute is sealed within minutes.
func (s *Service) FlushAudit(ctx context.Context) {
	if err := s.flushWALBatches(ctx); err != nil {
		s.Log.Warn("audit: WAL pushes not yet recorded", "error", err)
	}
}

// AuditFilter selects events to list or export.
type AuditFilter struct {
	Since time.Time // zero: from the start
	Asset string    // "": every asset
}

// AuditEvents calls fn with each event selected, oldest first, as decoded
// from the chain (what verify checks), after recording WAL pushes still
// waiting for their minute to end.
func (s *Service) AuditEvents(ctx context.Context, f AuditFilter, fn func(*audit.Record, *audit.Event) error) error {
	if err := s.flushWALBatches(ctx); err != nil {
		s.Log.Warn("audit: WAL pushes not yet recorded", "error", err)
	}
	cat, err := catalog.Open(ctx, catalog.Path(s.Policy.StateDir))
	if err != nil {
		return err
	}
	defer cat.Close()
	return cat.AuditRecords(ctx, catalog.AuditFilter{Since: f.Since}, func(r *audit.Record) error {
		e, err := audit.Decode(r.Body)
		if err != nil {
			return fmt.Errorf("audit event %d: %w (audit verify names what is wrong)", r.Seq, err)
		}
		if f.Asset != "" && e.Asset != f.Asset {
			return nil
		}
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			return nil
		}
		return fn(r, e)
	})
}

// AuditExport writes the events selected in format (jsonl or csv) to w
// and returns how many.
func (s *Service) AuditExport(ctx context.Context, w io.Writer, format string, f AuditFilter) (int, error) {
	x, err := audit.NewExporter(w, format)
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.AuditEvents(ctx, f, func(r *audit.Record, e *audit.Event) error {
		n++
		return x.Write(r, e)
	})
	if cerr := x.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// AuditVerified is what audit verify found.
type AuditVerified struct {
	// Chain is this host's chain; Events how many events it holds, Head
	// the hash after the last.
	Chain  string `json:"chain"`
	Events uint64 `json:"events"`
	Head   string `json:"head"`
	// Seals is how many seals of this host's chain were compared.
	Seals int `json:"seals"`
	// Break is the first broken link of this host's chain; nil when it
	// is whole.
	Break *audit.Break `json:"break,omitempty"`
	// Chains are every chain the repositories hold seals of (this host's,
	// other hosts', an earlier catalog's), each checked from its seals
	// alone: what a host without the catalog can verify.
	Chains []audit.ChainReport `json:"chains"`
	// Problems are repositories that could not be searched and seals
	// that do not authenticate or read: verify cannot vouch for them.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether nothing is wrong.
func (v *AuditVerified) OK() bool {
	if v.Break != nil || len(v.Problems) > 0 {
		return false
	}
	for _, c := range v.Chains {
		if c.Break != nil {
			return false
		}
	}
	return true
}

// AuditVerify walks this host's chain, comparing it with every seal the
// policy's repositories hold, and checks every chain sealed there on its
// own.
func (s *Service) AuditVerify(ctx context.Context) (*AuditVerified, error) {
	// A year of events is a heap of a few hundred MiB that lives until the
	// end (the digests of every event, twice): under the CLI's soft limit
	// for streaming backups the collector would run without pause.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(max(debug.SetMemoryLimit(-1), 4<<30)))
	if err := s.flushWALBatches(ctx); err != nil {
		s.Log.Warn("audit: WAL pushes not yet recorded", "error", err)
	}
	v := &AuditVerified{}
	// The seals are read (decrypted, decompressed, checked) while the
	// catalog is walked: on two cores, that halves a year's verify.
	type read struct {
		seals    []audit.Located
		problems []string
	}
	sealsRead := make(chan read, 1)
	go func() {
		var rv AuditVerified
		seals := s.readSeals(ctx, &rv)
		sealsRead <- read{seals, rv.Problems}
	}()
	walk, err := s.walkChain(ctx, v)
	got := <-sealsRead
	if err != nil {
		return nil, err
	}
	v.Problems = got.problems
	v.Break = walk.Finish(got.seals)
	v.Events, v.Head, v.Seals = walk.Events(), walk.Head().String(), walk.Seals()
	v.Chains = audit.VerifySeals(got.seals)
	return v, nil
}

// walkChain walks this host's chain from its first event to its last, or
// to its first broken link.
func (s *Service) walkChain(ctx context.Context, v *AuditVerified) (*audit.Verifier, error) {
	cat, err := catalog.Open(ctx, catalog.Path(s.Policy.StateDir))
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	if v.Chain, err = cat.AuditChain(ctx); err != nil {
		return nil, err
	}
	walk := audit.NewVerifier(v.Chain)
	if head, _, err := cat.AuditHead(ctx); err == nil {
		walk.Expect(head)
	}
	errBreak := errors.New("break")
	err = cat.AuditRecords(ctx, catalog.AuditFilter{}, func(r *audit.Record) error {
		if b := walk.Add(r); b != nil {
			return errBreak
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBreak) {
		return nil, err
	}
	return walk, nil
}

// readSeals reads every seal of every repository of the policy; what
// cannot be read becomes a problem of v.
func (s *Service) readSeals(ctx context.Context, v *AuditVerified) []audit.Located {
	var out []audit.Located
	for i := range s.Policy.Repositories {
		rp := &s.Policy.Repositories[i]
		r, err := s.Repository(ctx, rp)
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("repository %s: %v", rp.Name, err))
			continue
		}
		infos, err := r.AuditSeals(ctx)
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("repository %s: %v", rp.Name, err))
			continue
		}
		for _, in := range infos {
			where := fmt.Sprintf("repository %s (%s/%s/%s)", rp.Name, repo.AuditArea, in.Chain, in.Rel)
			data, err := r.GetAuditSeal(ctx, in.Chain, in.Rel)
			if err != nil {
				v.Problems = append(v.Problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			seal, err := audit.UnmarshalSeal(data)
			if err != nil {
				v.Problems = append(v.Problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			if head, from, ok := audit.ParseSealName(in.Rel); !ok || head != seal.Head || from != seal.From || seal.Chain != in.Chain {
				v.Problems = append(v.Problems, fmt.Sprintf("%s: its name does not match its content (chain %s, events %d..%d)", where, seal.Chain, seal.From, seal.Head))
				continue
			}
			seal.DropBodies()
			out = append(out, audit.Located{Where: where, Seal: seal})
		}
	}
	slices.SortStableFunc(out, func(a, b audit.Located) int { return cmp.Compare(a.Seal.Head, b.Seal.Head) })
	return out
}
