package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/walsock"
)

func newWALPushCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-push ASSET PATH",
		Short: "Archive one WAL file (archive_command)",
		Long: `Archive one WAL file. Use it as PostgreSQL's archive_command:

    archive_command = 'lifeboat -c /etc/lifeboat/lifeboat.yaml wal-push ASSET %p'

It exits 0 only once the file is durably in the repository. A file archived
before with identical content succeeds again; with different content it fails
and the archived file is kept. If the file's name is taken by an object that
does not authenticate (planted by someone without the key), the file is stored
under its alternate name (docs/FORMAT.md), where wal-fetch finds it, with a
warning; check alerts until the planted object is removed.

When the asset has copy repositories, the file is also added to each copy's
queue in the state directory (durable before exit 0), and a background
"lifeboat copy --queued" sends it on, so a slow copy never slows archiving.

Where lifeboat serve runs with this state directory, the file is handed to it
over state_dir/wal-push.sock and archived with the repository it keeps open;
exit 0 still means the daemon stored it durably. With -v, such a push logs
by=serve. See docs/postgres.md, "The hand-off to serve".`,
		Args: exactArgs(2, "ASSET PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWALPush(cmd.Context(), g, args[0], args[1])
		},
	}
}

func runWALPush(ctx context.Context, g *globalOptions, asset, path string) error {
	// A push allocates a bounded ~20 MiB and exits: collecting garbage on
	// the way only competes with the database for the CPU. The soft memory
	// limit set in main still applies.
	debug.SetGCPercent(-1)
	p, a, err := g.asset(asset)
	if err != nil {
		return err
	}
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return &usageError{Err: err}
	}
	if handed, err := handWALToServe(ctx, g, p, a, rps[0], path); handed || err != nil {
		return err
	}
	queues, err := app.OpenCopyQueues(p, a)
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	// A passphrase's Argon2id derivation would cost each segment a
	// quarter of a second of CPU: the derived key is kept in state_dir.
	r, err := app.OpenRepositoryKeyCached(ctx, rps[0], p.StateDir, g.log, g.now(time.Now))
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	enqueue := app.EnqueueAll(queues)
	res, err := postgres.PushWAL(ctx, r, a.Name, path, enqueue)
	app.AuditWALPush(ctx, p, a.Name, a.Repositories[0], r, path, err, g.log, g.now(time.Now))
	if err != nil {
		return err
	}
	g.log.Info("archived", "asset", a.Name, "file", res.Name, "bytes", res.Bytes, "existed", res.Existed)
	if res.Alternate != "" {
		// Archiving goes on (pg_wal must not fill up), and check alerts
		// until the squatter is removed.
		g.log.Warn("the file's name in the repository is taken by an object that is not authentic (planted without the key?); archived under its alternate name, where wal-fetch finds it; run lifeboat verify",
			"asset", a.Name, "file", res.Name, "stored_as", res.Alternate)
	}
	if len(queues) > 0 {
		// The file is archived and queued: a drainer that fails to start
		// delays the copy, which status shows, but loses nothing.
		if err := g.startDrainer(queues); err != nil {
			g.log.Warn("copy drainer not started; lifeboat copy sends the queue", "err", err)
		}
	}
	return nil
}

// handWALToServe hands the file to the lifeboat serve of this state
// directory, when one listens (docs/postgres.md, "The hand-off to
// serve"), and reports whether it did; the error is the push's outcome.
// Without a daemon, or one whose policy archives the asset elsewhere,
// nothing was handed over and wal-push archives by itself.
func handWALToServe(ctx context.Context, g *globalOptions, p *policy.Policy, a *policy.Asset, rp *policy.Repository, path string) (bool, error) {
	socket := walsock.Path(p.StateDir)
	req := walsock.Request{Asset: a.Name, Name: filepath.Base(path), Repository: rp.URL}
	rep, err := walsock.Push(ctx, socket, req, path)
	if errors.Is(err, walsock.ErrNoDaemon) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("wal-push %s: %w", req.Name, err)
	}
	if rep.Mismatch {
		g.log.Info("lifeboat serve's policy does not archive this asset into this repository; archiving without it", "asset", a.Name, "socket", socket)
		return false, nil
	}
	if rep.Error != "" {
		return true, fmt.Errorf("lifeboat serve: %s", rep.Error)
	}
	g.log.Info("archived", "asset", a.Name, "file", req.Name, "bytes", rep.Bytes, "existed", rep.Existed, "by", "serve")
	if rep.Alternate != "" {
		g.log.Warn("the file's name in the repository is taken by an object that is not authentic (planted without the key?); archived under its alternate name, where wal-fetch finds it; run lifeboat verify",
			"asset", a.Name, "file", req.Name, "stored_as", rep.Alternate)
	}
	return true, nil
}

// walPushReply is serve's answer to wal-push for what ArchiveLog did.
func walPushReply(res asset.ArchivedLog, err error) walsock.Reply {
	switch {
	case errors.Is(err, app.ErrNotThisPolicy):
		return walsock.Reply{Mismatch: true}
	case err != nil:
		return walsock.Reply{Error: err.Error()}
	}
	return walsock.Reply{Bytes: res.Bytes, Existed: res.Existed, Alternate: res.Alternate}
}

func newWALFetchCommand(g *globalOptions) *cobra.Command {
	var repository, until string
	cmd := &cobra.Command{
		Use:   "wal-fetch ASSET NAME DEST",
		Short: "Fetch one archived WAL file (restore_command)",
		Long: `Fetch one archived WAL file. Restore writes it into the recovery settings:

    restore_command = 'lifeboat -c /etc/lifeboat/lifeboat.yaml wal-fetch ASSET %f %p'

Exit 1 means the file is not in the archive, which PostgreSQL takes as the end
of the archived WAL. Every other failure (repository unreachable, damaged
object, a segment missing inside the archived range) exits 200, which makes
PostgreSQL stop recovery instead of ending it early.`,
		Args: exactArgs(3, "ASSET NAME DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWALFetch(cmd.Context(), g, repository, until, args[0], args[1], args[2])
		},
	}
	cmd.Flags().StringVar(&repository, "repository", "", "fetch from this repository of the asset (a copy) instead of the primary")
	cmd.Flags().StringVar(&until, "until", "", "treat WAL segments after this one as not archived (a drill's moment of failure)")
	cmd.Flags().MarkHidden("until")
	return cmd
}

func runWALFetch(ctx context.Context, g *globalOptions, repository, until, asset, name, dest string) error {
	p, a, err := g.asset(asset)
	if err != nil {
		return err
	}
	if until != "" && postgres.AfterSegment(name, until) {
		// What was archived after the drill began does not exist for
		// it: recovery ends where a failure at that moment would.
		return fmt.Errorf("wal-fetch %s: after %s, the end of the archive for this recovery: %w", name, until, postgres.ErrWALNotFound)
	}
	rp, err := assetRepositoryNamed(p, a, repository)
	if err != nil {
		return err
	}
	// A recovery runs one wal-fetch per segment: like wal-push, keep the
	// key a passphrase derives in state_dir when it is this user's.
	var r *repo.Repository
	if app.OwnStateDir(p.StateDir) {
		r, err = app.OpenRepositoryKeyCached(ctx, rp, p.StateDir, g.log, g.now(time.Now))
	} else {
		r, err = g.openRepository(ctx, rp)
	}
	if err != nil {
		return fmt.Errorf("wal-fetch: %w", err)
	}
	defer r.Close()
	err = postgres.FetchWAL(ctx, r, a.Name, name, dest)
	if errors.Is(err, postgres.ErrWALNotFound) {
		// At the end of the archive, the WAL stream's prefix of the
		// segment in progress (see FetchStreamedPartial for when).
		return postgres.FetchStreamedPartial(ctx, r, a.Name, name, dest)
	}
	return err
}
