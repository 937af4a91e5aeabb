package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// The audit trail hooks in here (docs/audit.md): every action of the
// service begins with
//
//	defer s.audited(ctx, audit.TypeX, asset, repository)(&err, finish...)
//
// which records one event when the action returns, however it ends: its
// type, asset, outcome, actor, source, command line (secrets redacted) and
// the ids it produced (finish fills them in from the action's results).
// The event is appended to the chain in the catalog and the chain's head
// is sealed into every repository the action concerns. A failure to
// record is logged, never turned into the action's failure: a backup that
// is durable must say so, and archiving must never stop for the audit
// trail (the next action's seal carries what this one could not).

// auditor is the service's part of the audit trail.
type auditor struct {
	once   sync.Once
	redact *audit.Redactor
	// mu orders this process's appends and seals.
	mu sync.Mutex
}

// finisher fills in what an action produced once it has returned, and
// returns further events it made (each deletion of an expire).
type finisher func(e *audit.Event) []*audit.Event

// recordTimeout bounds the recording of an event, which runs even when
// the action's context was cancelled: a stopped action is audited too.
const recordTimeout = time.Minute

// audited starts the audit of one action: the returned function, called
// (deferred) with the action's error, records its event.
func (s *Service) audited(ctx context.Context, typ, assetName, repository string) func(errp *error, finish ...finisher) {
	start := s.Now()
	return func(errp *error, finish ...finisher) {
		var err error
		if errp != nil {
			err = *errp
		}
		// An action run with --approval names the request it spent.
		e := &audit.Event{Type: typ, Asset: assetName, Repository: repository, Start: start, Time: s.Now(), Outcome: audit.OK, Request: approvalOf(ctx)}
		if d, ok := ctx.Value(auditDetailsKey{}).(map[string]string); ok {
			e.Details = maps.Clone(d)
		}
		if err != nil {
			e.Outcome, e.Error = audit.Failed, oneLine(err)
			if req, ok := approvalRefusal(err); ok {
				e.Outcome, e.Request = audit.Refused, req
			}
		}
		events := []*audit.Event{e}
		for _, f := range finish {
			if f != nil {
				events = append(events, f(e)...)
			}
		}
		s.recordEvents(ctx, events...)
	}
}

type auditDetailsKey struct{}

// WithAuditDetails returns ctx whose actions' audit events carry details:
// the dashboard names the signed-in person and the client's address, which
// the process's own actor and source do not tell.
func WithAuditDetails(ctx context.Context, details map[string]string) context.Context {
	return context.WithValue(ctx, auditDetailsKey{}, details)
}

// Audited is audited for actions carried out outside the service (key add,
// repo init, the dashboard's sign-ins): defer it with the action's error.
func (s *Service) Audited(ctx context.Context, typ, assetName, repository string) func(errp *error, details map[string]string) {
	done := s.audited(ctx, typ, assetName, repository)
	return func(errp *error, details map[string]string) {
		done(errp, func(e *audit.Event) []*audit.Event {
			e.Details = details
			if id := details["snapshot"]; id != "" {
				e.Snapshot = id
				delete(details, "snapshot")
			}
			return nil
		})
	}
}

// AuditPolicyReload records a reload of the policy at path (by lifeboat
// serve): err is why it was refused, nil when it took effect.
func (s *Service) AuditPolicyReload(ctx context.Context, path string, err error) {
	s.audited(ctx, audit.TypePolicyReload, "", "")(&err, func(e *audit.Event) []*audit.Event {
		e.Details = map[string]string{"policy": path}
		return nil
	})
}

// recordEvents appends events to the chain, sends them to syslog when the
// policy says so, and seals the chain into the repositories they concern.
func (s *Service) recordEvents(ctx context.Context, events ...*audit.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := s.appendAndSeal(ctx, events); err != nil {
		s.Log.Log(ctx, auditTrouble(events, slog.LevelError), "audit: the event is not recorded", "type", events[0].Type, "asset", events[0].Asset, "error", err)
	}
}

// auditTrouble is the level to log a failure to record or seal at: level
// when the action succeeded, debug when it failed, since the action's own
// error (usually the same unreachable or unwritable repository) is the
// one line an operator needs.
func auditTrouble(events []*audit.Event, level slog.Level) slog.Level {
	if events[0].Outcome != audit.OK {
		return slog.LevelDebug
	}
	return level
}

func (s *Service) appendAndSeal(ctx context.Context, events []*audit.Event) error {
	a := &s.auditor
	a.once.Do(func() { a.redact = audit.NewRedactor(policySecrets(s.Policy)...) })
	a.mu.Lock()
	defer a.mu.Unlock()
	rps := s.auditRepositories(events)
	keys := map[string]string{}
	for _, rp := range rps {
		if r := s.openedRepository(rp); r != nil {
			keys[rp.Name] = r.KeyName()
		}
	}
	src := audit.SourceFromEnv(os.Getenv)
	for _, e := range events {
		// An event made elsewhere (a minute of WAL pushes, recorded by
		// whichever process comes next) keeps the actor and source of the
		// processes that acted.
		if e.Actor.Host == "" {
			e.Actor = audit.ProcessActor()
			if len(keys) > 0 {
				e.Actor.Keys = keys
			}
			if e.Source == (audit.Source{}) {
				e.Source = src
			}
		}
		if e.Args == nil && len(os.Args) > 1 {
			e.Args = append([]string(nil), os.Args[1:]...)
		}
		a.redact.Event(e)
	}
	cat, err := s.openCatalog(ctx)
	if err != nil {
		return err
	}
	defer cat.Close()
	recs, err := cat.AppendAudit(ctx, func(chain string, last uint64, lastHash audit.Hash) ([]audit.Record, error) {
		out := make([]audit.Record, 0, len(events))
		for _, e := range events {
			r, err := audit.Append(chain, last, lastHash, e)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
			last, lastHash = r.Seq, r.Hash
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	if s.Policy.Audit.Syslog {
		if err := sendSyslog(recs); err != nil {
			s.Log.Warn("audit: not sent to syslog", "error", err)
		}
	}
	var errs []error
	for _, rp := range rps {
		if err := s.sealInto(ctx, cat, rp); err != nil {
			// Sealed with the next action that reaches the repository.
			errs = append(errs, fmt.Errorf("repository %s: %w", rp.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Info, not a warning: the repository that cannot take the seal
		// is one the action could not use either (its own error says so),
		// or one check reports as unreachable; the next action seals.
		s.Log.Log(ctx, auditTrouble(events, slog.LevelInfo), "audit: the chain's head is not sealed (the next action seals it)", "error", err)
	}
	return nil
}

func sendSyslog(recs []audit.Record) error {
	sl, err := audit.OpenSyslog()
	if err != nil {
		return err
	}
	defer sl.Close()
	for i := range recs {
		if err := sl.Send(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// auditRepositories are the repositories events concern: every one the
// asset uses, the repository acted on, or, for an event of the whole host
// (a policy reload), every repository of the policy.
func (s *Service) auditRepositories(events []*audit.Event) []*policy.Repository {
	var out []*policy.Repository
	add := func(rp *policy.Repository) {
		if !s.mayOpen(rp) { // a fresh host seals into the one it has
			return
		}
		for _, have := range out {
			if have.Name == rp.Name {
				return
			}
		}
		out = append(out, rp)
	}
	for _, e := range events {
		switch {
		case e.Asset != "":
			if a, err := s.Policy.Asset(e.Asset); err == nil {
				if rps, err := s.Policy.AssetRepositories(a); err == nil {
					for _, rp := range rps {
						add(rp)
					}
				}
			}
		case e.Repository != "":
			if rp, err := s.Policy.Repository(e.Repository); err == nil {
				add(rp)
			}
		default:
			for i := range s.Policy.Repositories {
				add(&s.Policy.Repositories[i])
			}
		}
	}
	return out
}

// Seals hold at most sealChunk events each; a repository that has not
// been sealed into for longer than maxCatchUp events gets only the newest
// maxCatchUp (its earlier seals, if any, cover the rest, and verify
// reports what no seal covers).
const (
	sealChunk  = 4096
	maxCatchUp = 16 * sealChunk
)

// sealInto seals every event since the last seal into rp.
func (s *Service) sealInto(ctx context.Context, cat *catalog.Catalog, rp *policy.Repository) error {
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return err
	}
	id := r.Config().ID
	sealed, err := cat.AuditSealed(ctx, id)
	if err != nil {
		return err
	}
	head, _, err := cat.AuditHead(ctx)
	if err != nil || sealed >= head {
		return err
	}
	chain, err := cat.AuditChain(ctx)
	if err != nil {
		return err
	}
	from := sealed + 1
	if head-from+1 > maxCatchUp {
		from = head - maxCatchUp + 1
	}
	prev := audit.Genesis(chain)
	var recs []audit.Record
	err = cat.AuditRecords(ctx, catalog.AuditFilter{From: from - 1, To: head}, func(r *audit.Record) error {
		if r.Seq == from-1 {
			prev = r.Hash
			return nil
		}
		c := *r
		c.Body = append([]byte(nil), r.Body...)
		recs = append(recs, c)
		return nil
	})
	if err != nil {
		return err
	}
	host := audit.ProcessActor().Host
	until := s.Now().Add(s.auditRetention())
	for len(recs) > 0 {
		n := min(len(recs), sealChunk)
		seal := audit.MakeSeal(chain, host, prev, recs[:n], func(rec *audit.Record) bool { return s.concerns(rec, rp) })
		if err := r.PutAuditSeal(ctx, chain, seal.Name(), seal.Marshal(), until); err != nil {
			return err
		}
		prev, recs = seal.HeadHash, recs[n:]
	}
	return cat.SetAuditSealed(ctx, id, head, s.Now())
}

// concerns reports whether an event is one a repository's seal carries
// whole: an event of one of its assets, of the repository itself, or of
// the whole host. Other events are sealed by their digest only, so one
// repository's readers do not learn what happens to assets kept elsewhere.
func (s *Service) concerns(rec *audit.Record, rp *policy.Repository) bool {
	e, err := audit.Decode(rec.Body)
	if err != nil {
		return false
	}
	switch {
	case e.Asset != "":
		a, err := s.Policy.Asset(e.Asset)
		return err == nil && a.UsesRepository(rp.Name)
	case e.Repository != "":
		return e.Repository == rp.Name
	}
	return true
}

func (s *Service) auditRetention() time.Duration {
	if d := s.Policy.Audit.Retention.Std(); d > 0 {
		return d
	}
	return policy.DefaultAuditRetention
}

// dsnPassword finds the password of a libpq key/value connection string.
var dsnPassword = regexp.MustCompile(`(?i)(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// policySecrets are the values of the policy an event must never show:
// every Secret (passphrases, storage and alert keys), the contents of
// repository key files, and the passwords of connection strings and URLs
// the kinds' settings hold.
func policySecrets(p *policy.Policy) []string {
	var out []string
	secretType := reflect.TypeFor[policy.Secret]()
	seen := map[uintptr]bool{}
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if v.IsNil() {
				return
			}
			if v.Kind() == reflect.Pointer {
				if seen[v.Pointer()] {
					return
				}
				seen[v.Pointer()] = true
			}
			walk(v.Elem(), name)
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), v.Type().Field(i).Name)
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), name)
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Value(), name)
			}
		case reflect.String:
			s := v.String()
			switch {
			case v.Type() == secretType:
				out = append(out, s)
			case strings.Contains(strings.ToUpper(name), "DSN") || strings.Contains(strings.ToUpper(name), "URL"):
				if u, err := url.Parse(s); err == nil && u.User != nil {
					if pw, ok := u.User.Password(); ok {
						out = append(out, pw)
					}
				}
				for _, m := range dsnPassword.FindAllStringSubmatch(s, -1) {
					out = append(out, strings.Trim(m[1], "'"))
				}
			}
		}
	}
	walk(reflect.ValueOf(p), "")
	for _, rp := range p.Repositories {
		if rp.KeyFile == "" {
			continue
		}
		if data, err := os.ReadFile(rp.KeyFile); err == nil && len(data) < 4096 {
			out = append(out, strings.TrimSpace(string(data)))
		}
	}
	return out
}

// snapshotID is a snapshot's full id, "" for none.
func snapshotID(s *repo.Snapshot) string {
	if s == nil {
		return ""
	}
	return s.ID.String()
}
