// Package web is the dashboard: server-rendered pages (no script needed,
// charts drawn as SVG here) and a JSON API behind every page, on top of
// the application service like the daemon. It reads through the same
// service functions the CLI prints (status, info, check, the report's
// input, approvals, the audit trail), so the browser and the terminal
// show the same numbers.
package web

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/report"
)

// Audit event types the dashboard records.
const (
	AuditSignIn  = "web-sign-in"
	AuditSignOut = "web-sign-out"
)

const (
	sessionCookie = "lifeboat_session"
	signinCookie  = "lifeboat_signin" // the sign-in form's CSRF token (double submit)
)

var errNotFound = errors.New("not found")

// Options shape a Server.
type Options struct {
	// TLS says the dashboard is served over TLS: cookies are Secure.
	TLS bool
	// SessionTTL is how long a session lasts (policy web.session).
	SessionTTL time.Duration
	Log        *slog.Logger
	// Fresh is how long a gathered overview is served again before it is
	// gathered anew (every page shows when it was gathered); 0 gathers on
	// every request. Gathering reads every repository and runs every
	// check, seconds for hundreds of assets.
	Fresh time.Duration
	// Listen is the address the dashboard listens on, from which the
	// OpenID Connect callback URL is made when web.oidc.redirect_url is
	// not set.
	Listen string
}

// Server serves the dashboard of one service.
type Server struct {
	svc      *app.Service
	accounts *Accounts
	sessions *sessions
	limit    *limiter
	tls      bool
	log      *slog.Logger
	mux      *http.ServeMux
	fresh    time.Duration

	gather sync.Mutex // one gathering at a time; the others wait for it
	cached *Overview

	oidc       *oidcAuth          // nil without web.oidc
	wa         *webauthn.WebAuthn // nil without approvals.webauthn_signers
	keySignins keySignins
}

// New makes the dashboard of svc, with the accounts of its state_dir.
func New(svc *app.Service, o Options) *Server {
	if o.SessionTTL <= 0 {
		o.SessionTTL = policy.DefaultWebSession
	}
	if o.Log == nil {
		o.Log = svc.Log
	}
	s := &Server{svc: svc, accounts: OpenAccounts(AccountsPath(svc.Policy.StateDir)), sessions: newSessions(o.SessionTTL),
		limit: newLimiter(5, 15*time.Minute), tls: o.TLS, log: o.Log, mux: http.NewServeMux(), fresh: o.Fresh}
	if oc := svc.Policy.Web.OIDC; oc != nil {
		listen := o.Listen
		if listen == "" {
			listen = svc.Policy.Web.Listen
		}
		s.oidc = newOIDC(oc, redirectFor(listen, o.TLS))
	}
	// The policy checked the origin; a relying party go-webauthn still
	// refuses leaves security keys off (the pages offer none), said in
	// the log rather than keeping the dashboard from starting.
	if wa, err := newWebAuthn(svc); err != nil {
		s.log.Error("web: security keys are off", "error", err)
	} else {
		s.wa = wa
	}
	s.routes()
	return s
}

// Accounts is the accounts file the server signs in against.
func (s *Server) Accounts() *Accounts { return s.accounts }

func (s *Server) now() time.Time { return s.svc.Now() }

// ServeHTTP serves the dashboard with its security headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write([]byte(styleCSS))
	})
	m.HandleFunc("GET /webauthn.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write([]byte(webauthnJS))
	})
	m.HandleFunc("GET /signin", s.signinForm)
	m.HandleFunc("GET /oidc/login", s.needOIDC(s.oidcLogin))
	m.HandleFunc("GET /oidc/callback", s.needOIDC(s.oidcCallback))
	m.Handle("GET /account", s.need(Viewer, s.accountPage))
	m.HandleFunc("POST /signin/key/options", s.keySigninOptions)
	m.HandleFunc("POST /signin/key", s.keySignin)
	m.Handle("POST /account/webauthn/options", s.need(Viewer, s.registerOptions))
	m.Handle("POST /account/webauthn/register", s.need(Viewer, s.register))
	m.Handle("POST /approvals/{id}/webauthn/options", s.need(Approver, s.approveOptions))
	m.Handle("POST /approvals/{id}/webauthn", s.need(Approver, s.approveWithKey))
	m.HandleFunc("POST /signin", s.signin)
	m.Handle("POST /signout", s.need(Viewer, s.signout))

	m.Handle("GET /{$}", s.need(Viewer, s.overviewPage))
	m.Handle("GET /assets/{host}/{name}", s.need(Viewer, s.assetPage))
	m.Handle("GET /drills", s.need(Viewer, s.drillsPage))
	m.Handle("GET /report", s.need(Viewer, s.reportPage))
	m.Handle("GET /approvals", s.need(Viewer, s.approvalsPage))
	m.Handle("GET /audit", s.need(Viewer, s.auditPage))
	m.Handle("POST /assets/{host}/{name}/backup", s.need(Operator, s.backup))
	m.Handle("POST /approvals/{id}/signature", s.need(Approver, s.addSignature))

	m.Handle("GET /api/overview", s.need(Viewer, s.apiOverview))
	m.Handle("GET /api/assets", s.need(Viewer, s.apiAssets))
	m.Handle("GET /api/assets/{host}/{name}", s.need(Viewer, s.apiAsset))
	m.Handle("GET /api/drills", s.need(Viewer, s.apiDrills))
	m.Handle("GET /api/report", s.need(Viewer, s.apiReport))
	m.Handle("GET /api/approvals", s.need(Viewer, s.apiApprovals))
	m.Handle("GET /api/audit", s.need(Viewer, s.apiAudit))
}

// needOIDC answers 404 when the policy has no web.oidc.
func (s *Server) needOIDC(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.oidc == nil {
			s.fail(w, r, http.StatusNotFound, "sign-in through OpenID Connect is not configured (web.oidc)")
			return
		}
		h(w, r)
	}
}

// sessionOf is the browser session of r; nil for a bearer token.
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	return s.sessions.get(c.Value, s.now())
}

// who is the caller of a request that passed need.
type who struct {
	name string
	role Role
	csrf string // "" for a bearer token, which carries no ambient authority
}

type whoKey struct{}

func whoOf(r *http.Request) who { w, _ := r.Context().Value(whoKey{}).(who); return w }

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// need admits a request whose session or bearer token has at least role;
// a POST from a session must carry the session's CSRF token.
func (s *Server) need(role Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var caller who
		if auth := r.Header.Get("Authorization"); auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok {
				s.fail(w, r, http.StatusUnauthorized, "Authorization must be Bearer TOKEN")
				return
			}
			tr, name, err := s.accounts.TokenRole(strings.TrimSpace(token))
			if err != nil {
				s.fail(w, r, http.StatusUnauthorized, "the bearer token is not valid")
				return
			}
			caller = who{name: name, role: tr}
		} else {
			c, err := r.Cookie(sessionCookie)
			var ses *session
			if err == nil {
				ses = s.sessions.get(c.Value, s.now())
			}
			if ses == nil {
				if isAPI(r) || r.Method != http.MethodGet {
					s.fail(w, r, http.StatusUnauthorized, "sign in first (or send Authorization: Bearer TOKEN)")
					return
				}
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			caller = who{name: ses.user, role: ses.role, csrf: ses.csrf}
			if r.Method == http.MethodPost {
				if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(ses.csrf)) != 1 {
					s.fail(w, r, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
					return
				}
			}
		}
		if !caller.role.Allows(role) {
			s.fail(w, r, http.StatusForbidden, fmt.Sprintf("this needs the %s role; %s is %s", role, caller.name, caller.role))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, caller)))
	})
}

// fail answers an error: JSON for the API, a page otherwise.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if isAPI(r) {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	s.render(w, r, code, "error", page{Title: http.StatusText(code), Data: msg})
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNotFound) {
		s.fail(w, r, http.StatusNotFound, "no such asset on this host")
		return
	}
	s.log.Error("web: request failed", "path", r.URL.Path, "error", err)
	s.fail(w, r, http.StatusInternalServerError, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func clientAddr(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: s.tls, SameSite: http.SameSiteStrictMode})
}

func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	token := randomText(32)
	s.setCookie(w, signinCookie, token, 600)
	s.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", CSRF: token, OIDC: s.oidcIssuer(), Script: s.wa != nil})
}

// oidcIssuer is the provider the sign-in page offers, "" for none.
func (s *Server) oidcIssuer() string {
	if s.oidc == nil {
		return ""
	}
	return s.oidc.cfg.Issuer
}

// signin checks the password and the TOTP code; every sign-in and every
// refusal is an audit event naming the client's address.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	client := clientAddr(r)
	name := r.PostFormValue("user")
	c, err := r.Cookie(signinCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		s.fail(w, r, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
		return
	}
	record := s.svc.Audited(r.Context(), AuditSignIn, "", "")
	details := map[string]string{"client": client, "user": name}
	if !s.limit.allowed(now, "client:"+client, "user:"+name) {
		err := errors.New("too many failed sign-ins: wait and try again")
		record(&err, details)
		s.fail(w, r, http.StatusTooManyRequests, err.Error())
		return
	}
	u, err := s.accounts.check(name, r.PostFormValue("password"), r.PostFormValue("code"), now)
	if err != nil {
		s.limit.fail(now, "client:"+client, "user:"+name)
		record(&err, details)
		token := randomText(32)
		s.setCookie(w, signinCookie, token, 600)
		s.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", CSRF: token, Data: err.Error(), OIDC: s.oidcIssuer(), Script: s.wa != nil})
		return
	}
	record(nil, details)
	id, ses := s.sessions.create(u, now)
	s.setCookie(w, sessionCookie, id, int(ses.expires.Sub(now).Seconds()))
	s.setCookie(w, signinCookie, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
	}
	s.svc.Audited(r.Context(), AuditSignOut, "", "")(nil, map[string]string{"client": clientAddr(r), "user": whoOf(r).name})
	s.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func filterOf(r *http.Request) Filter {
	q := r.URL.Query()
	return Filter{Host: q.Get("host"), Tier: q.Get("tier"), Kind: q.Get("kind"), State: q.Get("state")}
}

func (s *Server) filtered(ctx context.Context, f Filter) (*Overview, error) {
	ov, err := s.overview(ctx, s.now())
	if err != nil {
		return nil, err
	}
	all := ov.Assets
	ov.Assets = []AssetRow{}
	for i := range all {
		if f.keep(&all[i]) {
			ov.Assets = append(ov.Assets, all[i])
		}
	}
	return ov, nil
}

// assetName is the asset of a path /…/{host}/{name}: an asset of this
// host's policy.
// assetName is the asset a request names, of this host's policy; an
// asset of another host (a fleet catalog's) is errRemote.
func (s *Server) assetName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if r.PathValue("host") != s.hostName() {
		if s.svc.FleetEnabled() {
			return name, errRemote
		}
		return "", errNotFound
	}
	if _, err := s.svc.Policy.Asset(name); err != nil {
		return "", errNotFound
	}
	return name, nil
}

// errRemote marks an asset another agent of the fleet protects: its page
// holds what that agent published, not its repositories.
var errRemote = errors.New("an asset of another host")

// detailOf is the asset page's content for the asset a request names, of
// this host or of another host of the fleet.
func (s *Server) detailOf(r *http.Request) (*AssetDetail, error) {
	name, err := s.assetName(r)
	switch {
	case errors.Is(err, errRemote):
		return s.remoteDetail(r.Context(), r.PathValue("host"), name, s.now())
	case err != nil:
		return nil, err
	}
	return s.assetDetail(r.Context(), name, s.now())
}

func (s *Server) apiOverview(w http.ResponseWriter, r *http.Request) {
	ov, err := s.filtered(r.Context(), filterOf(r))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ov)
}

func (s *Server) apiAssets(w http.ResponseWriter, r *http.Request) {
	ov, err := s.filtered(r.Context(), filterOf(r))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ov.Assets)
}

func (s *Server) apiAsset(w http.ResponseWriter, r *http.Request) {
	d, err := s.detailOf(r)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) drills(ctx context.Context) ([]DrillView, error) {
	ds, err := s.svc.Drills(ctx, "", 200)
	if err != nil {
		return nil, err
	}
	out := []DrillView{}
	for _, d := range ds {
		out = append(out, DrillView{Asset: d.Asset, Tier: d.Tier, Repository: d.Repository, DrillRow: *drillRow(d)})
	}
	return out, nil
}

// DrillView is a drill on the drills page and in GET /api/drills.
type DrillView struct {
	Asset      string `json:"asset"`
	Tier       string `json:"tier,omitempty"`
	Repository string `json:"repository"`
	DrillRow
}

func (s *Server) apiDrills(w http.ResponseWriter, r *http.Request) {
	ds, err := s.drills(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

// reportInput is what `lifeboat report --since` reads; since as there.
func (s *Server) reportInput(r *http.Request) (report.Input, error) {
	now := s.now()
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := policy.ParseDuration(v)
		if err != nil {
			return report.Input{}, fmt.Errorf("since %q: write a duration, e.g. 30d", v)
		}
		since = now.Add(-d)
	}
	return s.svc.ReportInput(r.Context(), since, now, "")
}

func (s *Server) apiReport(w http.ResponseWriter, r *http.Request) {
	in, err := s.reportInput(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	var buf bytes.Buffer
	if err := report.Render(&buf, "json", in); err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}

// reportPage is the DR report's own HTML (lifeboat report --format html),
// whole: it is a self-contained document meant to be saved and sent.
func (s *Server) reportPage(w http.ResponseWriter, r *http.Request) {
	in, err := s.reportInput(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	var buf bytes.Buffer
	if err := report.Render(&buf, "html", in); err != nil {
		s.internal(w, r, err)
		return
	}
	// The report carries its own inline style; it is allowed here only.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (s *Server) apiApprovals(w http.ResponseWriter, r *http.Request) {
	rows, err := s.svc.Approvals(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if rows == nil {
		rows = []app.ApprovalRow{}
	}
	writeJSON(w, http.StatusOK, rows)
}

// AuditView is the audit page and GET /api/audit: the events selected
// and what audit verify found.
type AuditView struct {
	Events   []*audit.Event     `json:"events"`
	Verified *app.AuditVerified `json:"verified,omitempty"`
	OK       bool               `json:"ok"`
	Error    string             `json:"verify_error,omitempty"`
	Filter   AuditQuery         `json:"filter"`
}

// AuditQuery filters the audit page (query parameters asset, type,
// outcome, since).
type AuditQuery struct {
	Asset   string `json:"asset,omitempty"`
	Type    string `json:"type,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Since   string `json:"since,omitempty"`
}

// auditLimit bounds the events a page shows, newest kept.
const auditLimit = 500

func (s *Server) audit(r *http.Request) (*AuditView, error) {
	q := r.URL.Query()
	v := &AuditView{Events: []*audit.Event{}, Filter: AuditQuery{Asset: q.Get("asset"), Type: q.Get("type"), Outcome: q.Get("outcome"), Since: q.Get("since")}}
	f := app.AuditFilter{Asset: v.Filter.Asset}
	if v.Filter.Since != "" {
		d, err := policy.ParseDuration(v.Filter.Since)
		if err != nil {
			return nil, fmt.Errorf("since %q: write a duration, e.g. 7d", v.Filter.Since)
		}
		f.Since = s.now().Add(-d)
	}
	err := s.svc.AuditEvents(r.Context(), f, func(_ *audit.Record, e *audit.Event) error {
		if (v.Filter.Type == "" || e.Type == v.Filter.Type) && (v.Filter.Outcome == "" || e.Outcome == v.Filter.Outcome) {
			v.Events = append(v.Events, e)
			if len(v.Events) > auditLimit {
				v.Events = v.Events[1:]
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Newest first: what happened last is what one looks for.
	for i, j := 0, len(v.Events)-1; i < j; i, j = i+1, j-1 {
		v.Events[i], v.Events[j] = v.Events[j], v.Events[i]
	}
	ver, err := s.svc.AuditVerify(r.Context())
	if err != nil {
		v.Error = err.Error()
	} else {
		v.Verified, v.OK = ver, ver.OK()
	}
	return v, nil
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
	v, err := s.audit(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// backup runs a backup of the asset now, as `lifeboat backup` does, and
// records it in the catalog.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	name, err := s.assetName(r)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ctx := r.Context()
	res, err := s.svc.Backup(ctx, app.BackupRequest{Asset: name})
	if rerr := s.svc.RecordBackup(ctx, res, err); rerr != nil {
		s.log.Warn("web: backup not recorded in the catalog", "asset", name, "error", rerr)
	}
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, "backup of "+name+" failed: "+err.Error())
		return
	}
	if len(res.Copies) > 0 {
		if err := s.svc.DrainQueues(ctx, res.Copies, true); err != nil {
			s.log.Warn("web: copies of the backup are queued", "asset", name, "error", err)
		}
	}
	http.Redirect(w, r, r.URL.Path[:len(r.URL.Path)-len("/backup")]+"?backup="+res.Snapshot.ID.String(), http.StatusSeeOther)
}

// addSignature stores an approver's signature of a request (made with
// ssh-keygen -Y sign over the text `lifeboat approvals --show` prints),
// checked as `lifeboat approve --signature` checks it.
func (s *Server) addSignature(w http.ResponseWriter, r *http.Request) {
	sig := strings.TrimSpace(r.PostFormValue("signature"))
	if sig == "" {
		s.fail(w, r, http.StatusBadRequest, "paste the signature (ssh-keygen -Y sign -n lifeboat-approval)")
		return
	}
	if _, err := s.svc.AddApproval(r.Context(), r.PathValue("id"), []byte(sig+"\n")); err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	http.Redirect(w, r, "/approvals", http.StatusSeeOther)
}
