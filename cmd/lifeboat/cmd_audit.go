package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

type auditOptions struct {
	since string
	asset string
	json  bool
}

func newAuditCommand(g *globalOptions) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit [--since T] [--asset A] [--json]",
		Short: "List the audit trail: who did what, when, from where, and how it ended",
		Long: `List the events of this host's audit trail, oldest first: every backup, WAL
archiving (one event per asset and minute), restore, drill, verify, expire and
each deletion it made, copy, pin, unpin, key change, repository creation and
policy reload, with its outcome, the user, uid and host that ran it, the SSH
client it came from, the repository keys it used, its command line (secrets
redacted) and the ids it produced.

Events are hash-chained in the catalog and the chain's head is sealed into the
repositories each action used: "lifeboat audit verify" checks both;
"lifeboat audit export" writes the trail for an auditor. docs/audit.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.since, "since", "", "only events from this moment: a duration back from now (30d), a date (2026-11-01) or an RFC 3339 time")
	cmd.Flags().StringVar(&o.asset, "asset", "", "only the events of this asset")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the events as a JSON array")
	cmd.AddCommand(newAuditVerifyCommand(g), newAuditExportCommand(g))
	return cmd
}

// auditFilter reads --since and --asset.
func auditFilter(svc *app.Service, since, assetName string) (app.AuditFilter, error) {
	f := app.AuditFilter{Asset: assetName}
	if assetName != "" {
		if _, err := svc.Policy.Asset(assetName); err != nil {
			return f, &usageError{Err: err}
		}
	}
	t, err := parseSince(since, svc.Now())
	f.Since = t
	return f, err
}

func runAudit(ctx context.Context, g *globalOptions, o auditOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	f, err := auditFilter(svc, o.since, o.asset)
	if err != nil {
		return err
	}
	var events []*audit.Event
	err = svc.AuditEvents(ctx, f, func(_ *audit.Record, e *audit.Event) error {
		events = append(events, e)
		return nil
	})
	if err != nil {
		return err
	}
	if o.json {
		if events == nil {
			events = []*audit.Event{}
		}
		return g.printJSON(events)
	}
	if len(events) == 0 {
		fmt.Fprintln(g.stdout, "no audit events")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tASSET\tOUTCOME\tUSER\tHOST\tFROM\tIDS\tERROR")
	for _, e := range events {
		what := e.Asset
		if what == "" && e.Repository != "" {
			what = "repository " + e.Repository
		}
		from := e.Source.SSH
		if from == "" {
			from = e.Source.HTTP
		}
		var ids []string
		if e.Snapshot != "" {
			ids = append(ids, "snapshot "+shortID(e.Snapshot))
		}
		if e.Request != "" {
			ids = append(ids, "request "+e.Request)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s(%d)\t%s\t%s\t%s\t%s\n", e.Seq, lifeboat.FormatTime(e.Time), e.Type, dash(what), e.Outcome,
			e.Actor.User, e.Actor.UID, e.Actor.Host, dash(from), dash(strings.Join(ids, ", ")), e.Error)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func newAuditVerifyCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit chain against every seal in the repositories",
		Long: `Walk this host's audit chain, recomputing every event's hash, and compare it
with every sealed head the policy's repositories hold. A deleted, edited or
reordered event, or a catalog rolled back to an older copy, is named as the
first broken link, and verify exits 1. Every chain the repositories hold
seals of (other hosts', an earlier catalog's) is checked from its seals
alone, which is what a host without this catalog can verify.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd.Context(), g, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// errAuditBroken is verify's failure once it has printed why.
var errAuditBroken = errors.New("audit verify: the audit trail is not intact (see above)")

func runAuditVerify(ctx context.Context, g *globalOptions, asJSON bool) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	v, err := svc.AuditVerify(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if err := g.printJSON(v); err != nil {
			return err
		}
	} else {
		w := g.stdout
		fmt.Fprintf(w, "chain %s (this host): %d events, head %s, compared with %d seals\n", v.Chain, v.Events, v.Head[:16], v.Seals)
		if v.Break != nil {
			fmt.Fprintf(w, "BROKEN at event %d: %s\n", v.Break.Seq, v.Break.Reason)
		}
		for _, c := range v.Chains {
			var ranges []string
			for _, r := range c.Covered {
				ranges = append(ranges, fmt.Sprintf("%d..%d", r[0], r[1]))
			}
			mine := ""
			if c.Chain == v.Chain {
				mine = ", this host's"
			}
			fmt.Fprintf(w, "sealed chain %s (host %s%s): %d seals vouch for events %s, %d of them held whole\n",
				c.Chain, c.Host, mine, c.Seals, strings.Join(ranges, ", "), c.Bodies)
			if c.Break != nil {
				fmt.Fprintf(w, "BROKEN sealed chain %s at event %d: %s\n", c.Chain, c.Break.Seq, c.Break.Reason)
			}
		}
		for _, p := range v.Problems {
			fmt.Fprintf(w, "problem: %s\n", p)
		}
	}
	if !v.OK() {
		if v.Break != nil {
			return fmt.Errorf("audit verify: event %d is the first broken link: %s", v.Break.Seq, v.Break.Reason)
		}
		return errAuditBroken
	}
	if !asJSON {
		fmt.Fprintln(g.stdout, "audit trail intact")
	}
	return nil
}

type auditExportOptions struct {
	format string
	since  string
	asset  string
}

func newAuditExportCommand(g *globalOptions) *cobra.Command {
	var o auditExportOptions
	cmd := &cobra.Command{
		Use:   "export --format jsonl|csv [--since T] [--asset A]",
		Short: "Write the audit trail for an auditor (JSON lines or CSV) to standard output",
		Long: `Write the events of the audit trail to standard output, oldest first. JSON
lines are the events exactly as chained (SHA-256 of a line is the event's
digest, so the chain can be recomputed from the export: docs/audit.md); CSV
has one column per field and the chain's hash after each event.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditExport(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "jsonl", "jsonl or csv")
	cmd.Flags().StringVar(&o.since, "since", "", "only events from this moment (30d, 2026-11-01, RFC 3339)")
	cmd.Flags().StringVar(&o.asset, "asset", "", "only the events of this asset")
	return cmd
}

func runAuditExport(ctx context.Context, g *globalOptions, o auditExportOptions) error {
	if o.format != audit.FormatJSONL && o.format != audit.FormatCSV {
		return usagef("--format %q: want jsonl or csv", o.format)
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	f, err := auditFilter(svc, o.since, o.asset)
	if err != nil {
		return err
	}
	n, err := svc.AuditExport(ctx, g.stdout, o.format, f)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	g.log.Info("audit export", "events", n, "format", o.format)
	return nil
}

// audited records an action the CLI still carries out itself (pin,
// unpin, repository creation, key changes) through the service, which
// chains and seals it like every other: defer the result with the
// action's error. Without a policy there is no state_dir to record in,
// and the action fails on that anyway.
func (g *globalOptions) audited(ctx context.Context, typ, assetName, repository string) func(errp *error, details map[string]string) {
	svc, err := g.service()
	if err != nil {
		return func(*error, map[string]string) {}
	}
	return svc.Audited(ctx, typ, assetName, repository)
}

// auditReload reads the policy again for lifeboat serve and records the
// reload (on the new policy's service, or the running one's when the new
// one does not load).
func auditReload(ctx context.Context, g *globalOptions, running *policy.Policy, path string) (*policy.Policy, error) {
	p, err := g.policy()
	on := p
	if on == nil {
		on = running
	}
	svc := app.New(on, app.Options{Log: g.log, Now: g.now(time.Now)})
	defer svc.Close()
	svc.AuditPolicyReload(ctx, path, err)
	return p, err
}
