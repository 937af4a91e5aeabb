package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/expire"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Two-person approval hooks in here: every protected action calls
// authorize first, with the action's name and its exact arguments. With
// no approval presented, a request is stored in the repository the action
// uses and *approval.RequiredError returned; with one (WithApproval), the
// action runs only if the request is that action with those arguments,
// open, unused, and signed by enough approvers, and the request is spent
// before the action starts. docs/approvals.md.

type approvalKey struct{}

// WithApproval returns ctx carrying the id of the approval request the
// caller presents for the protected action it asks for (--approval).
func WithApproval(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, approvalKey{}, id)
}

func approvalOf(ctx context.Context) string {
	id, _ := ctx.Value(approvalKey{}).(string)
	return id
}

// gate is a protected action as authorize sees it.
type gate struct {
	action string
	asset  string
	args   []approval.Arg
	// home is where a new request is stored: the repository the action
	// uses, which its approvers must reach anyway.
	home *policy.Repository
}

// approvalRefusal tells whether err is an action refused for lack of
// approval, and the request it names: the audit trail records such an
// action as refused, with the request.
func approvalRefusal(err error) (request string, refused bool) {
	var re *approval.RequiredError
	if errors.As(err, &re) {
		return re.RequestID, true
	}
	return "", false
}

// withRequest is the audit finisher that names an approval request, and
// records a failure as a refusal.
func withRequest(id string) finisher {
	return func(e *audit.Event) []*audit.Event {
		e.Request = id
		if e.Outcome == audit.Failed {
			e.Outcome = audit.Refused
		}
		return nil
	}
}

// authorize lets a protected action run, or says why not. Actions the
// policy does not protect pass untouched.
func (s *Service) authorize(ctx context.Context, g gate) error {
	if !s.Policy.Protects(g.action) {
		return nil
	}
	if id := approvalOf(ctx); id != "" {
		return s.useApproval(ctx, g, id)
	}
	return s.requestApproval(ctx, g)
}

// requestApproval stores a request for g, or finds the identical open
// one this user made before (a retried command, a schedule), and returns
// the RequiredError that names it.
func (s *Service) requestApproval(ctx context.Context, g gate) error {
	ap := s.Policy.Approvals
	r, err := s.Repository(ctx, g.home)
	if err != nil {
		return err
	}
	me := approval.CurrentRequester()
	now := s.Now()
	open, _, err := approval.List(ctx, r)
	if err != nil {
		return err
	}
	for _, q := range open {
		if q.Requester != me || q.Expired(now) || q.Required != ap.Required || q.Matches(g.action, g.asset, g.args) != nil {
			continue
		}
		if used, err := approval.Used(ctx, r, q.ID); err != nil || used {
			continue
		}
		return &approval.RequiredError{RequestID: q.ID, Action: g.action, Asset: g.asset, Required: q.Required, Existing: true}
	}
	q := approval.New(g.action, g.asset, g.args, me, now, ap.Expiry.Std(), ap.Required)
	if err := approval.Store(ctx, r, q); err != nil {
		return err
	}
	var recorded error
	s.audited(ctx, audit.TypeApprovalRequested, g.asset, g.home.Name)(&recorded, withRequest(q.ID))
	s.Log.Info("approval requested", "request", q.ID, "action", q.Describe(), "repository", g.home.Name)
	return &approval.RequiredError{RequestID: q.ID, Action: g.action, Asset: g.asset, Required: q.Required}
}

// useApproval checks every rule for request id and spends it.
func (s *Service) useApproval(ctx context.Context, g gate, id string) (err error) {
	defer s.audited(ctx, audit.TypeApprovalUsed, g.asset, g.home.Name)(&err, func(e *audit.Event) []*audit.Event {
		if err != nil {
			e.Type = audit.TypeApprovalRefused
		}
		return withRequest(id)(e)
	})
	r, _, q, err := s.findApproval(ctx, g.home, id)
	if err != nil {
		return asset.Usagef("--approval %s: %v", id, err)
	}
	if err := q.Matches(g.action, g.asset, g.args); err != nil {
		return fmt.Errorf("%w: %w", err, approval.ErrNotApproved)
	}
	if need := s.Policy.Approvals.Required; q.Required < need {
		return fmt.Errorf("approval request %s asks for %d approvals; the policy now requires %d: ask again: %w", id, q.Required, need, approval.ErrNotApproved)
	}
	if used, err := approval.Used(ctx, r, id); err != nil {
		return err
	} else if used {
		return fmt.Errorf("approval request %s: %w", id, approval.ErrUsed)
	}
	// The repository's mark can be deleted by whoever may delete; this
	// host's record of its own uses cannot be reached from the store.
	local := s.usedRecord(id)
	if _, err := os.Stat(local); err == nil {
		return fmt.Errorf("approval request %s was used on this host before (%s), though the repository no longer says so: %w", id, local, approval.ErrUsed)
	}
	sigs, err := approval.Signatures(ctx, r, id)
	if err != nil {
		return err
	}
	v, err := s.approvalChecker().Authorize(ctx, q, sigs, s.Now())
	if err != nil {
		return err
	}
	use := approval.Use{Used: s.Now().UTC(), By: approval.CurrentRequester()}
	// The repository's mark is the claim every host sees, written once;
	// the local record stands even if someone who may delete removes it.
	if err := approval.MarkUsed(ctx, r, id, use); err != nil {
		return err
	}
	if err := s.recordUse(id, q, use); err != nil {
		return err
	}
	var by []string
	for _, a := range v.Approvers {
		by = append(by, a.Principal)
	}
	s.Log.Info("approval used", "request", id, "action", q.Describe(), "approvers", strings.Join(by, ", "))
	return nil
}

func (s *Service) approvalChecker() *approval.Checker {
	ap := s.Policy.Approvals
	return &approval.Checker{AllowedSigners: ap.AllowedSigners, WebAuthnSigners: ap.WebAuthnSigners, WebAuthnOrigin: ap.WebAuthnOrigin}
}

// usedRecord is this host's record that request id was used.
func (s *Service) usedRecord(id string) string {
	return filepath.Join(s.Policy.StateDir, "approvals", "used", id)
}

func (s *Service) recordUse(id string, q *approval.Request, use approval.Use) error {
	path := s.usedRecord(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("record the use of approval request %s: %w", id, err)
	}
	doc, err := json.Marshal(struct {
		Request *approval.Request `json:"request"`
		Use     approval.Use      `json:"use"`
	}{q, use})
	if err != nil {
		return err
	}
	if err := durable.WriteNew(path, doc, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("approval request %s: %w", id, approval.ErrUsed)
		}
		return fmt.Errorf("record the use of approval request %s: %w", id, err)
	}
	return nil
}

// findApproval finds request id: in home first, then in the policy's
// other repositories (an approval asked for one repository's expire is
// kept there, one for an asset's restore in the repository restored
// from). Repositories that cannot be opened are passed over when the
// request is found elsewhere.
func (s *Service) findApproval(ctx context.Context, home *policy.Repository, id string) (*repo.Repository, *policy.Repository, *approval.Request, error) {
	if !approval.ValidID(id) {
		return nil, nil, nil, fmt.Errorf("%q is not an approval request id (they look like 20261205T071500Z-1a2b3c4d)", id)
	}
	var rps []*policy.Repository
	if home != nil {
		rps = append(rps, home)
	}
	for i := range s.Policy.Repositories {
		if rp := &s.Policy.Repositories[i]; home == nil || rp.Name != home.Name {
			rps = append(rps, rp)
		}
	}
	var errs []error
	for _, rp := range rps {
		r, err := s.Repository(ctx, rp)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: %w", rp.Name, err))
			continue
		}
		q, err := approval.Load(ctx, r, id)
		if errors.Is(err, approval.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		return r, rp, q, nil
	}
	if len(errs) > 0 {
		return nil, nil, nil, fmt.Errorf("approval request %s not found (%w)", id, errors.Join(errs...))
	}
	return nil, nil, nil, fmt.Errorf("no repository of the policy holds approval request %s: %w", id, approval.ErrNotFound)
}

// authorizeRestore is the gate of Service.Restore.
func (s *Service) authorizeRestore(ctx context.Context, a *policy.Asset, k asset.Kind, req RestoreRequest) error {
	g, protected, err := s.restoreGate(a, k, req)
	if err != nil || !protected {
		return err
	}
	return s.authorize(ctx, g)
}

// authorizeExpire is the gate of Service.Expire: retention_reduce when
// an asset's rules keep less than the last expire's, expire when the run
// deletes history; when both, one approval of retention_reduce names
// what the run deletes too.
func (s *Service) authorizeExpire(ctx context.Context, rp *policy.Repository, r *repo.Repository, o ExpireOptions) error {
	if o.DryRun {
		return nil
	}
	rg, reduced, err := s.retentionGate(ctx, rp, r)
	if err != nil {
		return err
	}
	eg, deletes, err := s.expireGate(ctx, rp, r, o)
	if err != nil {
		return err
	}
	switch {
	case reduced && deletes:
		for _, a := range eg.args {
			if !slices.ContainsFunc(rg.args, func(b approval.Arg) bool { return b.Name == a.Name }) {
				rg.args = append(rg.args, a)
			}
		}
		return s.authorize(ctx, rg)
	case reduced:
		return s.authorize(ctx, rg)
	case deletes:
		return s.authorize(ctx, eg)
	}
	return nil
}

// authorizeForget is the gate of Service.Forget: deleting one snapshot by
// hand is an expire of it.
func (s *Service) authorizeForget(ctx context.Context, rp *policy.Repository, snap *repo.Snapshot) error {
	return s.authorize(ctx, gate{action: policy.ActionExpire, asset: snap.Asset, home: rp,
		args: []approval.Arg{{Name: "repository", Value: rp.Name}, {Name: "forget_snapshot", Value: snap.ID.String()}}})
}

// restoreGate is the approval a restore needs: none unless it is a
// production restore (--production, or onto a production asset's own
// location) and the policy protects restore_production.
func (s *Service) restoreGate(a *policy.Asset, k asset.Kind, req RestoreRequest) (gate, bool, error) {
	production := req.Production || a.Production && ontoHome(k, a, req.To)
	if !production || !s.Policy.Protects(policy.ActionRestoreProduction) {
		return gate{}, false, nil
	}
	home, err := s.assetRepositoryPolicy(a, req.Repository)
	if err != nil {
		return gate{}, false, err
	}
	args := []approval.Arg{
		{Name: "repository", Value: req.Repository},
		{Name: "snapshot", Value: req.Snapshot},
		{Name: "to", Value: req.To},
		{Name: "production", Value: strconv.FormatBool(req.Production)},
	}
	if !req.AsOf.IsZero() {
		args = append(args, approval.Arg{Name: "repository_as_of", Value: req.AsOf.UTC().Format(time.RFC3339Nano)})
	}
	if req.UID >= 0 || req.GID >= 0 {
		args = append(args, approval.Arg{Name: "owner", Value: fmt.Sprintf("%d:%d", req.UID, req.GID)})
	}
	for _, name := range slices.Sorted(maps.Keys(req.Flags)) {
		args = append(args, approval.Arg{Name: "--" + name, Value: flagText(req.Flags[name])})
	}
	return gate{action: policy.ActionRestoreProduction, asset: a.Name, args: args, home: home}, true, nil
}

// flagText writes a restore flag's value the same way every time.
func flagText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = strconv.Quote(s)
		}
		return strings.Join(q, ",")
	}
	return fmt.Sprintf("%v", v)
}

// ontoHome reports whether a restore to to writes onto (or over, or into)
// one of the places the asset lives.
func ontoHome(k asset.Kind, a *policy.Asset, to string) bool {
	h, ok := k.(asset.Homed)
	if !ok || to == "" || strings.Contains(to, "://") {
		return false
	}
	to = resolved(to)
	for _, home := range h.Homes(a) {
		home = resolved(home)
		if home == to || within(to, home) || within(home, to) {
			return true
		}
	}
	return false
}

// resolved is path absolute, cleaned, and with the symbolic links of
// its longest existing ancestor resolved, so that a link to production
// is production.
func resolved(path string) string {
	path = filepath.Clean(path)
	rest := ""
	for dir := path; ; dir = filepath.Dir(dir) {
		if abs, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(abs, rest)
		}
		if dir == filepath.Dir(dir) {
			return path
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

func within(path, dir string) bool {
	return strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// expireGate is the approval an expire of rp needs: none for a dry run,
// for a policy that does not protect expire, or for a run whose plan
// deletes no snapshot and no WAL. The arguments name the snapshots it
// deletes, so an approval does not stretch to a run that would delete
// more.
func (s *Service) expireGate(ctx context.Context, rp *policy.Repository, r *repo.Repository, o ExpireOptions) (gate, bool, error) {
	if o.DryRun || !s.Policy.Protects(policy.ActionExpire) {
		return gate{}, false, nil
	}
	plan := o
	plan.DryRun = true
	plan.Log = s.Log
	rep, err := expire.Run(ctx, r, plan)
	if err != nil {
		return gate{}, false, fmt.Errorf("plan the expire of %s to see whether it needs approval: %w", rp.Name, err)
	}
	var doomed []string
	for _, v := range rep.Snapshots {
		if !v.Keep {
			doomed = append(doomed, v.ID)
		}
	}
	slices.Sort(doomed)
	wal := false
	for _, ranges := range rep.WAL {
		for _, wr := range ranges {
			wal = wal || !wr.Keep
		}
	}
	if len(doomed) == 0 && !wal {
		return gate{}, false, nil
	}
	args := []approval.Arg{
		{Name: "repository", Value: rp.Name},
		{Name: "delete_snapshots", Value: strings.Join(doomed, ",")},
		{Name: "delete_wal", Value: strconv.FormatBool(wal)},
	}
	return gate{action: policy.ActionExpire, args: args, home: rp}, true, nil
}

// ApprovalRow is one request as `lifeboat approvals` lists it.
type ApprovalRow struct {
	Request    *approval.Request `json:"request"`
	Repository string            `json:"repository"`
	Used       bool              `json:"used"`
	Expired    bool              `json:"expired"`
	// Verdict is what its signatures are worth now; nil when the
	// approvals section's allowed_signers cannot be read here.
	Verdict *approval.Verdict `json:"verdict,omitempty"`
	// Signatures is how many signatures are stored with it.
	Signatures int    `json:"signatures"`
	Problem    string `json:"problem,omitempty"`
}

// Approvals lists the approval requests of every repository of the
// policy, oldest first. A repository that cannot be read is a problem
// reported with the rows of the others.
func (s *Service) Approvals(ctx context.Context) ([]ApprovalRow, error) {
	var rows []ApprovalRow
	var errs []error
	for i := range s.Policy.Repositories {
		rp := &s.Policy.Repositories[i]
		r, err := s.Repository(ctx, rp)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: %w", rp.Name, err))
			continue
		}
		reqs, bad, err := approval.List(ctx, r)
		errs = append(errs, bad...)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: %w", rp.Name, err))
		}
		for _, q := range reqs {
			row, err := s.approvalRow(ctx, r, rp, q)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, func(a, b ApprovalRow) int { return a.Request.Created.Compare(b.Request.Created) })
	return rows, errors.Join(errs...)
}

func (s *Service) approvalRow(ctx context.Context, r *repo.Repository, rp *policy.Repository, q *approval.Request) (ApprovalRow, error) {
	row := ApprovalRow{Request: q, Repository: rp.Name, Expired: q.Expired(s.Now())}
	var err error
	if row.Used, err = approval.Used(ctx, r, q.ID); err != nil {
		return row, err
	}
	sigs, err := approval.Signatures(ctx, r, q.ID)
	if err != nil {
		return row, err
	}
	row.Signatures = len(sigs)
	if s.Policy.Approvals == nil {
		row.Problem = "the policy has no approvals section"
		return row, nil
	}
	v, err := s.approvalChecker().Check(ctx, q, sigs)
	if err != nil {
		row.Problem = err.Error()
		return row, nil
	}
	row.Verdict = v
	return row, nil
}

// Approval finds one request and what its signatures are worth.
func (s *Service) Approval(ctx context.Context, id string) (ApprovalRow, error) {
	r, rp, q, err := s.findApproval(ctx, nil, id)
	if err != nil {
		return ApprovalRow{}, asset.Usagef("%v", err)
	}
	return s.approvalRow(ctx, r, rp, q)
}

// Approve signs request id with the SSH key at keyPath (ssh-keygen -Y
// sign; a FIDO key asks for a touch on stderr) and stores the signature
// with the request, after checking that it counts: a signature that
// would not (a key outside allowed_signers, the requester's own) is
// refused, not stored.
func (s *Service) Approve(ctx context.Context, id, keyPath string, stderr io.Writer) (ApprovalRow, error) {
	return s.approve(ctx, id, func(q *approval.Request) ([]byte, string, error) {
		sig, err := approval.Sign(ctx, "", keyPath, q, stderr)
		return sig, "the signature of " + keyPath, err
	})
}

// AddApproval stores a signature of request id made elsewhere (ssh-keygen
// -Y sign -n lifeboat-approval over the text `lifeboat approvals --show`
// prints), after the same checks as Approve.
func (s *Service) AddApproval(ctx context.Context, id string, sig []byte) (ApprovalRow, error) {
	return s.approve(ctx, id, func(*approval.Request) ([]byte, string, error) { return sig, "the signature given", nil })
}

func (s *Service) approve(ctx context.Context, id string, sign func(*approval.Request) ([]byte, string, error)) (row ApprovalRow, err error) {
	var assetName, home string
	defer func() {
		s.audited(ctx, audit.TypeApprovalGranted, assetName, home)(&err, withRequest(id))
	}()
	if s.Policy.Approvals == nil {
		return ApprovalRow{}, asset.Usagef("the policy has no approvals section: nothing needs approval")
	}
	r, rp, q, err := s.findApproval(ctx, nil, id)
	if err != nil {
		return ApprovalRow{}, asset.Usagef("%v", err)
	}
	assetName, home = q.Asset, rp.Name
	if q.Expired(s.Now()) {
		return ApprovalRow{}, fmt.Errorf("approval request %s expired at %s; ask for a new one: %w", id, q.Expires.UTC().Format(time.RFC3339), approval.ErrExpired)
	}
	if used, err := approval.Used(ctx, r, id); err != nil {
		return ApprovalRow{}, err
	} else if used {
		return ApprovalRow{}, fmt.Errorf("approval request %s: %w", id, approval.ErrUsed)
	}
	sig, what, err := sign(q)
	if err != nil {
		return ApprovalRow{}, err
	}
	v, err := s.approvalChecker().Check(ctx, q, [][]byte{sig})
	if err != nil {
		return ApprovalRow{}, err
	}
	if len(v.Approvers) == 0 {
		reason := "it does not verify"
		if len(v.Refused) > 0 {
			reason = v.Refused[0].Reason
		}
		return ApprovalRow{}, fmt.Errorf("%s would not count as an approval of %s: %s; nothing stored: %w", what, id, reason, approval.ErrNotApproved)
	}
	if err := approval.AddSignature(ctx, r, id, sig); err != nil {
		return ApprovalRow{}, err
	}
	s.Log.Info("approval granted", "request", id, "principal", v.Approvers[0].Principal, "key", v.Approvers[0].Key)
	return s.approvalRow(ctx, r, rp, q)
}
