package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// NewKind is the files kind: directories and files with their metadata
// (see docs/files.md).
func NewKind() asset.Kind { return kind{} }

type kind struct{}

var _ asset.Differ = kind{}

func (kind) Name() lifeboat.AssetKind { return lifeboat.KindFiles }

func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	a := b.Asset
	cfg, err := configOf(a)
	if err != nil {
		return nil, err
	}
	snap, info, err := Backup(ctx, b.Repo, BackupOptions{Asset: a.Name, Paths: cfg.Paths, Exclude: cfg.Exclude,
		LockWait: b.LockWait, Log: b.Log})
	if errors.Is(err, ErrPaths) {
		return nil, &asset.UsageError{Err: err}
	}
	if err != nil {
		return nil, err
	}
	// Each skipped file was logged as it was met; this line stays when
	// the log level hides warnings from cron mail.
	var left []string
	for _, c := range []struct {
		n    int64
		what string
	}{{info.Special, "sockets, pipes or devices skipped"}, {info.Vanished, "vanished while backed up (left out)"},
		{info.ChangedCount, "kept changing while read (stored as last read)"}} {
		if c.n > 0 {
			left = append(left, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if len(left) > 0 {
		b.Warn(strings.Join(left, ", "))
	}
	return snap, nil
}

func (kind) RestoreFlags() []asset.Flag {
	return []asset.Flag{
		{Name: "path", Usage: "only this file or directory (a path as backed up)"},
		{Name: "delta", Type: asset.FlagBool, Usage: "restore into an existing directory, rewriting only what differs"},
	}
}

func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	if r.To == "" {
		return nil, asset.Usagef("restore of a files asset needs --to DIR (a file backed up as /etc/x is written to DIR/etc/x)")
	}
	path := r.Flags.String("path")
	if path != "" && !filepath.IsAbs(path) {
		return nil, asset.Usagef("--path %q: give the path as it was backed up, absolute (like /etc/drop/app.conf)", path)
	}
	start := time.Now()
	s := r.Snapshot
	res, err := Restore(ctx, r.Repo, s, RestoreOptions{Dir: r.To, Path: path, Delta: r.Flags.Bool("delta"), UID: r.UID, GID: r.GID,
		Workers: r.Workers, Progress: func(w int64) {
			r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s: %s written", r.Asset.Name, asset.HumanBytes(w)), Done: w})
		}})
	if errors.Is(err, ErrNotInSnapshot) {
		return nil, &asset.UsageError{Err: err}
	}
	if err != nil {
		return nil, err
	}
	out := &asset.Restored{Snapshot: s, Lines: []string{fmt.Sprintf("restored snapshot %s of %s to %s: %d files (%d entries), %s written in %s",
		s.ID.Short(), r.Asset.Name, r.To, res.Stats.Files, res.Nodes, asset.HumanBytes(res.Stats.BytesWritten),
		time.Since(start).Round(time.Millisecond))}}
	if path != "" {
		out.Lines = append(out.Lines, fmt.Sprintf("%s is at %s", filepath.Clean(path), res.Target))
	}
	return out, nil
}

// Drill restores the whole tree into a temporary directory and checks
// that every file came back at its recorded size.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)
	res, err := Restore(ctx, d.Repo(), s, RestoreOptions{Dir: filepath.Join(d.WorkDir(), "tree"), UID: os.Getuid(), GID: os.Getgid(), Workers: d.Workers()})
	d.Phase(evidence.PhaseWrite)
	if err != nil {
		return err
	}
	d.Report().Bytes += res.Stats.BytesWritten
	c := asset.IntegrityCheck{Name: "restored bytes equal the snapshot's",
		Got: strconv.FormatInt(res.Stats.BytesWritten, 10), Expect: strconv.FormatInt(s.Stats.BytesTotal, 10)}
	c.Passed = res.Stats.BytesWritten == s.Stats.BytesTotal
	if !c.Passed {
		c.Detail = fmt.Sprintf("wrote %d bytes, the snapshot holds %d", res.Stats.BytesWritten, s.Stats.BytesTotal)
	}
	d.Integrity(c)
	d.Phase(evidence.PhaseChecks)
	return nil
}

func (kind) Diff(ctx context.Context, r *repo.Repository, from, to *repo.Snapshot) (asset.DiffResult, error) {
	return Diff(ctx, r, from, to, DiffOptions{})
}

// WriteText writes the list of changes, then the line diffs.
func (res *DiffResult) WriteText(w io.Writer, from, to *repo.Snapshot) {
	fmt.Fprintf(w, "asset %s: snapshot %s (%s) -> %s (%s)\n", res.Asset, from.ID.Short(), lifeboat.FormatTime(from.EndTime),
		to.ID.Short(), lifeboat.FormatTime(to.EndTime))
	for _, n := range []struct {
		id   repo.ID
		info *Info
	}{{from.ID, res.FromInfo}, {to.ID, res.ToInfo}} {
		if n.info.ChangedCount > 0 {
			fmt.Fprintf(w, "note: in snapshot %s, %d files kept changing while read and may mix old and new content: %s\n",
				n.id.Short(), n.info.ChangedCount, strings.Join(n.info.Changed, ", "))
		}
	}
	for _, c := range res.Changes {
		e := c.New
		if e == nil {
			e = c.Old
		}
		name := c.Path
		if e.Type == "dir" {
			name += "/"
		}
		var details []string
		switch c.Status {
		case Added:
			fmt.Fprintf(w, "+ %s", name)
		case Removed:
			fmt.Fprintf(w, "- %s", name)
		default:
			fmt.Fprintf(w, "M %s", name)
			for _, what := range c.What {
				switch what {
				case "type":
					details = append(details, fmt.Sprintf("type %s -> %s", c.Old.Type, c.New.Type))
				case "content":
					details = append(details, fmt.Sprintf("content, %s -> %s", asset.HumanBytes(c.Old.Size), asset.HumanBytes(c.New.Size)))
				case "mode":
					details = append(details, fmt.Sprintf("mode %s -> %s", c.Old.Mode, c.New.Mode))
				case "owner":
					details = append(details, fmt.Sprintf("owner %d:%d -> %d:%d", c.Old.UID, c.Old.GID, c.New.UID, c.New.GID))
				case "link":
					details = append(details, fmt.Sprintf("link %s -> %s", c.Old.Link, c.New.Link))
				}
			}
		}
		if c.NoDiff != "" {
			details = append(details, "no line diff: "+c.NoDiff)
		}
		if len(details) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(details, "; "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed\n", res.Added, res.Removed, res.Changed)
	for _, c := range res.Changes {
		if c.Diff != "" {
			fmt.Fprintf(w, "\n%s", c.Diff)
		}
	}
}
