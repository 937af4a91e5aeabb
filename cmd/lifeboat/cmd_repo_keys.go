package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// identityPassphraseEnv is where keygen takes the identity's passphrase
// from when it does not ask on a terminal.
const identityPassphraseEnv = "LIFEBOAT_IDENTITY_PASSPHRASE"

type repoKeygenOptions struct {
	identity, recipient, keyFile string
}

func newRepoKeygenCommand(g *globalOptions) *cobra.Command {
	var o repoKeygenOptions
	cmd := &cobra.Command{
		Use:   "keygen --identity PATH --recipient PATH [--key-file PATH]",
		Short: "Make an identity (private key) and its recipient (public key) for public-key repositories",
		Long: `Make a new X25519 identity at --identity and its recipient at --recipient.
Give the recipient to 'lifeboat repo init --recipient' on the backup hosts;
keep the identity offline or on the restore host only, where the policy names
it (identity_file, and identity_passphrase or identity_key_file).

The identity is sealed by a passphrase (Argon2id), read from
$` + identityPassphraseEnv + ` or asked for on the terminal; or, with --key-file,
by a 256-bit key file (created if missing), which a restore host opens without
stretching: every wal-fetch of a recovery opens the identity, and Argon2id
costs each of them about half a second. Neither output file may exist.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoKeygen(g, o)
		},
	}
	cmd.Flags().StringVar(&o.identity, "identity", "", "where to write the identity (private key)")
	cmd.Flags().StringVar(&o.recipient, "recipient", "", "where to write the recipient (public key)")
	cmd.Flags().StringVar(&o.keyFile, "key-file", "", "seal the identity by this key file (created if missing) instead of a passphrase")
	return cmd
}

func runRepoKeygen(g *globalOptions, o repoKeygenOptions) error {
	if o.identity == "" || o.recipient == "" {
		return usagef("keygen needs --identity PATH and --recipient PATH")
	}
	var sec repo.Secret
	var err error
	if o.keyFile != "" {
		created, err := ensureKeyFile(o.keyFile)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(g.stdout, "created key file %s: it opens the identity; keep it with the identity, apart from the backup hosts\n", o.keyFile)
		}
		if sec, err = repo.KeyFile(o.keyFile); err != nil {
			return &usageError{Err: err}
		}
	} else if sec, err = identityPassphrase(); err != nil {
		return err
	}
	rc, err := repo.GenerateIdentity(o.identity, o.recipient, sec)
	if err != nil {
		return &usageError{Err: err}
	}
	fmt.Fprintf(g.stdout, "wrote identity %s and recipient %s (recipient %s): keep the identity and its passphrase apart from the backup hosts\n",
		o.identity, o.recipient, rc.ID())
	return nil
}

// identityPassphrase reads the new identity's passphrase from the
// environment, or twice from the terminal.
func identityPassphrase() (repo.Secret, error) {
	if p, ok := os.LookupEnv(identityPassphraseEnv); ok {
		s, err := repo.Passphrase(p)
		if err != nil {
			return s, &usageError{Err: fmt.Errorf("$%s: %w", identityPassphraseEnv, err)}
		}
		return s, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return repo.Secret{}, usagef("keygen needs a passphrase: set $%s or run it on a terminal", identityPassphraseEnv)
	}
	var got [2]string
	for i, prompt := range []string{"identity passphrase: ", "again: "} {
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return repo.Secret{}, fmt.Errorf("read passphrase: %w", err)
		}
		got[i] = string(b)
	}
	if got[0] != got[1] {
		return repo.Secret{}, usagef("the passphrases differ")
	}
	s, err := repo.Passphrase(got[0])
	if err != nil {
		return s, &usageError{Err: err}
	}
	return s, nil
}

type repoRecipientOptions struct {
	recipient string
	removeOld bool
}

func newRepoAddRecipientCommand(g *globalOptions) *cobra.Command {
	var o repoRecipientOptions
	cmd := &cobra.Command{
		Use:   "add-recipient REPOSITORY --recipient PUBFILE",
		Short: "Seal new backups of a public-key repository to a new recipient",
		Long: `Start a new data key for a public-key repository, readable only by the
identity of the recipient in PUBFILE: every backup from now on is sealed to
it, while older backups stay readable with the identities of their time.
The new key is signed by the current one, so this runs where the current
identity is (the policy's identity_file). To let a new identity read old
backups as well, use 'lifeboat repo rewrap'.`,
		Args: exactArgs(1, "one REPOSITORY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoAddRecipient(cmd.Context(), g, args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.recipient, "recipient", "", "the recipient file of the new identity")
	return cmd
}

func runRepoAddRecipient(ctx context.Context, g *globalOptions, name string, o repoRecipientOptions) error {
	r, rc, rpName, err := openForRecipient(ctx, g, name, o, "add-recipient")
	if err != nil {
		return err
	}
	defer r.Close()
	id, err := r.AddRecipient(ctx, rc)
	if err != nil {
		return fmt.Errorf("repository %s: add recipient: %w", rpName, err)
	}
	fmt.Fprintf(g.stdout, "repository %s: new backups are sealed to data key %s, readable by recipient %s only; older backups keep their identities\n",
		rpName, id, rc.ID())
	return nil
}

func newRepoRewrapCommand(g *globalOptions) *cobra.Command {
	var o repoRecipientOptions
	cmd := &cobra.Command{
		Use:   "rewrap REPOSITORY --recipient PUBFILE [--remove-old]",
		Short: "Let a new identity read every backup of a public-key repository, without rewriting data",
		Long: `Wrap every data key that the policy's identity opens to the recipient in
PUBFILE as well: only the small wrapped keys are written, no backup is read
or rewritten. With --remove-old the wraps of those keys to every other
recipient are then deleted (a credential that may delete is needed), so that
a lost or leaked identity no longer opens them.`,
		Args: exactArgs(1, "one REPOSITORY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoRewrap(cmd.Context(), g, args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.recipient, "recipient", "", "the recipient file of the identity to wrap the data keys to")
	cmd.Flags().BoolVar(&o.removeOld, "remove-old", false, "delete the wraps to other recipients afterwards")
	return cmd
}

func runRepoRewrap(ctx context.Context, g *globalOptions, name string, o repoRecipientOptions) error {
	r, rc, rpName, err := openForRecipient(ctx, g, name, o, "rewrap")
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := r.Rewrap(ctx, rc, o.removeOld)
	if rep != nil && len(rep.Wrapped) > 0 {
		fmt.Fprintf(g.stdout, "repository %s: data keys %s wrapped to recipient %s\n", rpName, strings.Join(rep.Wrapped, ", "), rc.ID())
	}
	if rep != nil && len(rep.Removed) > 0 {
		fmt.Fprintf(g.stdout, "repository %s: removed %s\n", rpName, strings.Join(rep.Removed, ", "))
	}
	if err != nil {
		return fmt.Errorf("repository %s: rewrap: %w", rpName, err)
	}
	if len(rep.NotOpened) > 0 {
		return fmt.Errorf("repository %s: the identity does not open data keys %s: they were left as they were", rpName, strings.Join(rep.NotOpened, ", "))
	}
	return nil
}

// openForRecipient reads --recipient and opens the repository of the
// policy called name.
func openForRecipient(ctx context.Context, g *globalOptions, name string, o repoRecipientOptions, verb string) (*repo.Repository, repo.Recipient, string, error) {
	if o.recipient == "" {
		return nil, repo.Recipient{}, "", usagef("%s needs --recipient PUBFILE (made by `lifeboat repo keygen`)", verb)
	}
	rc, err := repo.ReadRecipientFile(o.recipient)
	if err != nil {
		return nil, rc, "", &usageError{Err: fmt.Errorf("--recipient: %w", err)}
	}
	p, err := g.policy()
	if err != nil {
		return nil, rc, "", err
	}
	rp, err := p.Repository(name)
	if err != nil {
		return nil, rc, "", &usageError{Err: err}
	}
	r, err := g.openRepository(ctx, rp)
	if err != nil {
		return nil, rc, "", err
	}
	if !r.PublicKeyMode() {
		r.Close()
		return nil, rc, "", &usageError{Err: errors.New("repository " + rp.Name + " does not seal contents to a public key (made without `repo init --recipient`)")}
	}
	return r, rc, rp.Name, nil
}
