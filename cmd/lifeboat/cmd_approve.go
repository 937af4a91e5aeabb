package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lifeboat-dr/lifeboat/internal/app"
)

// addApprovalFlag declares --approval on a protected command.
func addApprovalFlag(f *pflag.FlagSet, id *string) {
	f.StringVar(id, "approval", "", "run on this approval request (its id), once approvers have signed it: `lifeboat approvals`")
}

type approvalsOptions struct {
	json bool
	show string
	all  bool
}

func newApprovalsCommand(g *globalOptions) *cobra.Command {
	var o approvalsOptions
	cmd := &cobra.Command{
		Use:   "approvals [--json] [--show ID]",
		Short: "List approval requests: what each would run, who asked, who signed",
		Long: `List the approval requests kept in the policy's repositories: a protected
action (policy section approvals) run without --approval leaves one and exits 3.
Open requests are listed by default (--all adds used and expired ones), with
the action and its exact arguments, the requester, the expiry and the
signatures that count against the policy's allowed_signers.

--show ID prints the exact text an approver signs, for review before
` + "`lifeboat approve ID --key PATH`" + `. See docs/approvals.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApprovals(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the requests as JSON")
	cmd.Flags().StringVar(&o.show, "show", "", "print one request in full, as approvers sign it")
	cmd.Flags().BoolVar(&o.all, "all", false, "list used and expired requests too")
	return cmd
}

// approvalJSON is one request as `approvals --json` prints it.
type approvalJSON struct {
	ID         string            `json:"id"`
	Action     string            `json:"action"`
	Asset      string            `json:"asset,omitempty"`
	Args       map[string]string `json:"args"`
	Requester  string            `json:"requester"`
	Created    time.Time         `json:"created"`
	Expires    time.Time         `json:"expires"`
	Required   int               `json:"required"`
	Signatures int               `json:"signatures"`
	Approvers  []string          `json:"approvers"`
	Refused    []string          `json:"refused,omitempty"`
	Repository string            `json:"repository"`
	Status     string            `json:"status"`
	Problem    string            `json:"problem,omitempty"`
}

func approvalStatus(r app.ApprovalRow) string {
	switch {
	case r.Used:
		return "used"
	case r.Expired:
		return "expired"
	case r.Verdict != nil && r.Verdict.Enough():
		return "approved"
	}
	return "open"
}

func toApprovalJSON(r app.ApprovalRow) approvalJSON {
	q := r.Request
	j := approvalJSON{ID: q.ID, Action: q.Action, Asset: q.Asset, Args: map[string]string{}, Requester: q.Requester.String(),
		Created: q.Created, Expires: q.Expires, Required: q.Required, Signatures: r.Signatures, Approvers: []string{},
		Repository: r.Repository, Status: approvalStatus(r), Problem: r.Problem}
	for _, a := range q.Args {
		j.Args[a.Name] = a.Value
	}
	if v := r.Verdict; v != nil {
		for _, a := range v.Approvers {
			j.Approvers = append(j.Approvers, a.Principal)
		}
		for _, f := range v.Refused {
			j.Refused = append(j.Refused, strings.TrimSpace(f.Key+" "+f.Reason))
		}
	}
	return j
}

func runApprovals(ctx context.Context, g *globalOptions, o approvalsOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	if o.show != "" {
		row, err := svc.Approval(ctx, o.show)
		if err != nil {
			return err
		}
		if o.json {
			return g.printJSON(toApprovalJSON(row))
		}
		// Only the signed text goes to stdout, so that it can be signed
		// elsewhere as it is: ssh-keygen -Y sign -n lifeboat-approval.
		fmt.Fprintf(g.stderr, "# %s, in repository %s: %s\n", approvalStatus(row), row.Repository, row.Request.Describe())
		_, err = g.stdout.Write(row.Request.Canonical())
		return err
	}
	rows, err := svc.Approvals(ctx)
	var shown []app.ApprovalRow
	for _, r := range rows {
		if o.all || !r.Used && !r.Expired {
			shown = append(shown, r)
		}
	}
	if o.json {
		out := make([]approvalJSON, 0, len(shown))
		for _, r := range shown {
			out = append(out, toApprovalJSON(r))
		}
		if perr := g.printJSON(out); perr != nil {
			return perr
		}
		return err
	}
	if len(shown) == 0 {
		fmt.Fprintln(g.stdout, "no open approval requests")
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tREQUESTER\tEXPIRES\tSIGNATURES\tSTATUS")
	for _, r := range shown {
		j := toApprovalJSON(r)
		sigs := fmt.Sprintf("%d/%d", len(j.Approvers), j.Required)
		if len(j.Approvers) > 0 {
			sigs += " (" + strings.Join(j.Approvers, ", ") + ")"
		}
		if n := r.Signatures - len(j.Approvers); n > 0 {
			sigs += fmt.Sprintf(", %d not counted", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, r.Request.Describe(), j.Requester,
			j.Expires.UTC().Format("2006-01-02 15:04:05Z"), sigs, j.Status)
	}
	tw.Flush()
	return err
}

func newApproveCommand(g *globalOptions) *cobra.Command {
	var key, sigFile string
	cmd := &cobra.Command{
		Use:   "approve ID --key PATH | --signature FILE",
		Short: "Approve a request: sign it with your SSH key",
		Long: `Sign approval request ID with the SSH key at PATH (ssh-keygen -Y sign,
namespace lifeboat-approval) and store the signature with the request. A FIDO
key (sk-ssh-ed25519) asks for a touch. The signature is checked against the
policy's allowed_signers first: one that would not count (a key not listed,
the requester's own) is refused and not stored. Review the request first with
` + "`lifeboat approvals --show ID`" + `.

To sign where the repository cannot be reached (a laptop with the token),
save the text ` + "`lifeboat approvals --show ID`" + ` prints to a file, sign it there
with ` + "`ssh-keygen -Y sign -n lifeboat-approval -f KEY FILE`" + `, and store FILE.sig
with ` + "`lifeboat approve ID --signature FILE.sig`" + `. See docs/approvals.md.`,
		Args: exactArgs(1, "one request ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (key == "") == (sigFile == "") {
				return usagef("approve needs one of --key (the SSH private key to sign with, or its .pub with the key in ssh-agent) and --signature (a signature made elsewhere)")
			}
			svc, err := g.service()
			if err != nil {
				return err
			}
			var row app.ApprovalRow
			if key != "" {
				row, err = svc.Approve(cmd.Context(), args[0], key, g.stderr)
			} else {
				sig, rerr := os.ReadFile(sigFile)
				if rerr != nil {
					return usagef("--signature: %v", rerr)
				}
				row, err = svc.AddApproval(cmd.Context(), args[0], sig)
			}
			if err != nil {
				return err
			}
			j := toApprovalJSON(row)
			fmt.Fprintf(g.stdout, "approved %s: %s; %d of %d approvals (%s)\n", j.ID, row.Request.Describe(), len(j.Approvers), j.Required, strings.Join(j.Approvers, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the SSH key to sign with")
	cmd.Flags().StringVar(&sigFile, "signature", "", "store this signature (ssh-keygen -Y sign -n lifeboat-approval over the text of approvals --show)")
	return cmd
}

// runUnpin removes a hold through the service, which asks for approval
// when the policy protects unpin.
func runUnpin(ctx context.Context, g *globalOptions, id string, o pinOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	done, err := svc.Unpin(app.WithApproval(ctx, o.approval), o.repository, id)
	for _, u := range done {
		fmt.Fprintf(g.stdout, "snapshot %s unpinned in %s\n", u.Snapshot.ID.Short(), u.Repository.Name)
	}
	return err
}
