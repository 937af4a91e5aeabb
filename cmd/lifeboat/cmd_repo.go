package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	storagefs "github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

func newRepoCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Manage repositories",
	}
	cmd.AddCommand(newRepoInitCommand(g), newRepoAddKeyCommand(g), newRepoKeysCommand(g), newRepoRemoveKeyCommand(g), newRepoKeygenCommand(g),
		newRepoAddRecipientCommand(g), newRepoRewrapCommand(g))
	return cmd
}

type repoInitOptions struct {
	names     []string
	recipient string // recipient file: make public-key repositories
}

func newRepoInitCommand(g *globalOptions) *cobra.Command {
	var o repoInitOptions
	cmd := &cobra.Command{
		Use:   "init [REPOSITORY...]",
		Short: "Create the repositories of the policy (all, or those named)",
		Long: `Create repositories. A repository with a key_file that does not exist yet
gets a new random key file (64 hex digits, a 256-bit key); keep a copy of it
somewhere safe: without it no backup in the repository can be read. An
existing key file must hold 64 hex digits.

With --recipient PUBFILE (a recipient file from 'lifeboat repo keygen') the
repository seals the contents of backups (file data, WAL) so that only the
recipient's identity reads them: the hosts that back up hold only the public
key and cannot read any backup (docs/keys.md).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return runRepoInit(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.recipient, "recipient", "", "seal backup contents to the recipient in this file (public-key mode)")
	return cmd
}

func runRepoInit(ctx context.Context, g *globalOptions, o repoInitOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	var targets []*policy.Repository
	if len(o.names) == 0 {
		for i := range p.Repositories {
			targets = append(targets, &p.Repositories[i])
		}
	}
	for _, n := range o.names {
		rp, err := p.Repository(n)
		if err != nil {
			return &usageError{Err: err}
		}
		targets = append(targets, rp)
	}
	// Copies take their primary's key, so primaries come first.
	sort.SliceStable(targets, func(i, j int) bool {
		return p.PrimaryOf(targets[i].Name) == nil && p.PrimaryOf(targets[j].Name) != nil
	})
	var rc *repo.Recipient
	if o.recipient != "" {
		r, err := repo.ReadRecipientFile(o.recipient)
		if err != nil {
			return &usageError{Err: fmt.Errorf("--recipient: %w", err)}
		}
		rc = &r
	}
	for _, rp := range targets {
		if err := initRepository(ctx, g, p, rp, rc); err != nil {
			return err
		}
	}
	return nil
}

func initRepository(ctx context.Context, g *globalOptions, p *policy.Policy, rp *policy.Repository, rc *repo.Recipient) (err error) {
	defer g.audited(ctx, audit.TypeRepoInit, "", rp.Name)(&err, nil)
	if rp.KeyFile != "" {
		created, err := ensureKeyFile(rp.KeyFile)
		if err != nil {
			return fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		if created {
			fmt.Fprintf(g.stdout, "created key file %s: keep a copy apart from the repository; without it the backups cannot be read\n", rp.KeyFile)
		}
	}
	// The secret is checked before anything is created: a key file in the
	// old format makes no new repository.
	sec, err := app.SecretFor(rp)
	if err != nil {
		return err
	}
	if sec.Legacy() {
		return &usageError{Err: fmt.Errorf("repository %s: %s is not 64 hex digits; new repositories need a 256-bit key file: "+
			"give key_file a path that does not exist and `lifeboat repo init` creates one there", rp.Name, sec)}
	}
	u, err := url.Parse(rp.URL)
	if err != nil {
		return &usageError{Err: fmt.Errorf("repository %s: url: %w", rp.Name, err)}
	}
	if u.Scheme == "file" {
		if err := storagefs.Create(u.Path); err != nil {
			return fmt.Errorf("repository %s: %w", rp.Name, err)
		}
	}
	be, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	defer be.Close()
	if primary := p.PrimaryOf(rp.Name); primary != nil {
		src, err := g.openRepository(ctx, primary)
		if err != nil {
			return fmt.Errorf("repository %s copies %s, which must be initialized first: %w", rp.Name, primary.Name, err)
		}
		if err := src.InitCopy(ctx, be, sec); err != nil {
			return fmt.Errorf("init repository %s: %w", rp.Name, err)
		}
		fmt.Fprintf(g.stdout, "initialized repository %s at %s as a copy of %s\n", rp.Name, be.Location(), primary.Name)
		return nil
	}
	cfg, err := repo.Init(ctx, be, sec, repo.InitOptions{Recipient: rc})
	if err != nil {
		return fmt.Errorf("init repository %s: %w", rp.Name, err)
	}
	fmt.Fprintf(g.stdout, "initialized repository %s at %s (id %s, format %d, block size %s)\n", rp.Name, be.Location(), cfg.ID[:8], cfg.Version, humanBytes(int64(cfg.BlockSize)))
	if rc != nil {
		fmt.Fprintf(g.stdout, "repository %s seals backup contents to recipient %s (data key %s): restores need its identity\n", rp.Name, rc.ID(), cfg.DataKey.ID)
	}
	return nil
}

// ensureKeyFile creates a new random key file at path unless a file is
// there, and reports whether it did.
func ensureKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := repo.GenerateKeyFile(path); err != nil {
		return false, err
	}
	return true, nil
}

type repoAddKeyOptions struct {
	keyFile string
}

func newRepoAddKeyCommand(g *globalOptions) *cobra.Command {
	var o repoAddKeyOptions
	cmd := &cobra.Command{
		Use:   "add-key REPOSITORY --key-file PATH",
		Short: "Let a further key file open a repository (key rotation, old-format key files)",
		Long: `Add a key to a repository: the repository is opened with the key of the
policy, and a new key object is stored that opens it with the key file at
PATH, which is created (64 random hex digits) if it does not exist. Then
point the repository's key_file at PATH. The old key keeps working until its
key object is deleted with a credential that may delete; the output names it.

This is how a key file in the old format (not 64 hex digits) is replaced:
docs/storage.md, "Key files".`,
		Args: exactArgs(1, "one REPOSITORY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoAddKey(cmd.Context(), g, args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.keyFile, "key-file", "", "the key file to add (created if missing)")
	return cmd
}

func runRepoAddKey(ctx context.Context, g *globalOptions, name string, o repoAddKeyOptions) (err error) {
	defer g.audited(ctx, audit.TypeKeyAdd, "", name)(&err, map[string]string{"key_file": o.keyFile})
	if o.keyFile == "" {
		return usagef("add-key needs --key-file: the path of the key file to add")
	}
	p, err := g.policy()
	if err != nil {
		return err
	}
	rp, err := p.Repository(name)
	if err != nil {
		return &usageError{Err: err}
	}
	path, err := filepath.Abs(o.keyFile)
	if err != nil {
		return &usageError{Err: fmt.Errorf("--key-file: %w", err)}
	}
	if _, err := os.Stat(path); err == nil {
		sec, err := repo.KeyFile(path)
		if err != nil {
			return &usageError{Err: err}
		}
		if sec.Legacy() {
			return usagef("%s is not 64 hex digits: give --key-file a path that does not exist and add-key creates a key file there", path)
		}
	}
	r, err := g.openRepository(ctx, rp)
	if err != nil {
		return err
	}
	defer r.Close()
	created, err := ensureKeyFile(path)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(g.stdout, "created key file %s: keep a copy apart from the repository; without it the backups cannot be read\n", path)
	}
	sec, err := repo.KeyFile(path)
	if err != nil {
		return err
	}
	added, err := r.AddKey(ctx, sec)
	if err != nil {
		return fmt.Errorf("repository %s: add key: %w", rp.Name, err)
	}
	// Prove the new key opens the repository before saying so.
	be, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	check, err := repo.Open(ctx, be, sec, g.log)
	if err != nil {
		be.Close()
		return fmt.Errorf("repository %s: the added key does not open it: %w", rp.Name, err)
	}
	opened := check.KeyName()
	check.Close()
	fmt.Fprintf(g.stdout, "repository %s: key object %s opens it with key file %s; set key_file: %s in the policy\n", rp.Name, added, path, path)
	if old := r.KeyName(); old != opened {
		fmt.Fprintf(g.stdout, "repository %s: the previous key (%s) still opens it until that object is deleted with a credential that may delete\n", rp.Name, old)
	}
	return nil
}

func newRepoKeysCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys REPOSITORY",
		Short: "List the key objects that open a repository",
		Args:  exactArgs(1, "one REPOSITORY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := g.service()
			if err != nil {
				return err
			}
			rows, err := svc.Keys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rows)
			}
			for _, r := range rows {
				mark := ""
				if r.Current {
					mark = "  (opened this run: the policy's key)"
				}
				fmt.Fprintf(g.stdout, "%s%s\n", r.Key, mark)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRepoRemoveKeyCommand(g *globalOptions) *cobra.Command {
	var approvalID string
	cmd := &cobra.Command{
		Use:   "remove-key REPOSITORY KEY",
		Short: "Retire a key: its key file or passphrase no longer opens the repository",
		Long: `Delete a key object (repo keys lists them), so the key file or passphrase
it holds the master key for no longer opens the repository: how a key that
left with a person or a host is retired. The key this run opened the
repository with, and the last key, are refused. Protected by approval when
the policy lists key_remove. The master key itself is unchanged: see
docs/storage.md, "Key files", for what that means after a key was stolen.`,
		Args: exactArgs(2, "REPOSITORY and KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := g.service()
			if err != nil {
				return err
			}
			if err := svc.RemoveKey(app.WithApproval(cmd.Context(), approvalID), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "repository %s: key %s removed\n", args[0], strings.TrimPrefix(args[1], "keys/"))
			return nil
		},
	}
	addApprovalFlag(cmd.Flags(), &approvalID)
	return cmd
}
