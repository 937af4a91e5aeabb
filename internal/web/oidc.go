package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Sign-in through OpenID Connect: the authorization code flow with state,
// nonce and PKCE (S256). go-oidc reads the provider's discovery document
// and keys and checks the ID token (issuer, audience, expiry, signature);
// the nonce is checked here. A person's role comes from a claim of the ID
// token (groups → role), or the policy's default role.

const oidcCookie = "lifeboat_oidc" // binds a pending sign-in to the browser that began it

// oidcPendingTTL is how long a browser has to come back from the provider.
const oidcPendingTTL = 10 * time.Minute

type oidcPending struct {
	nonce, verifier string
	expires         time.Time
}

type oidcAuth struct {
	cfg         *policy.OIDC
	redirectURL string

	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use, so that the dashboard starts while the provider is down
	pending  map[string]oidcPending
}

func newOIDC(cfg *policy.OIDC, redirect string) *oidcAuth {
	if cfg.RedirectURL != "" {
		redirect = cfg.RedirectURL
	}
	return &oidcAuth{cfg: cfg, redirectURL: redirect, pending: map[string]oidcPending{}}
}

// redirectFor is the callback URL when the policy gives none: the
// dashboard's listen address, which is right for a dashboard reached at
// the address it listens on.
func redirectFor(listen string, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(listen)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		listen = net.JoinHostPort("localhost", port)
	}
	return scheme + "://" + listen + "/oidc/callback"
}

func (o *oidcAuth) config(ctx context.Context) (*oauth2.Config, *oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(dctx, o.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("OpenID Connect provider %s: %w", o.cfg.Issuer, err)
		}
		o.provider = p
	}
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret.Reveal(), Endpoint: o.provider.Endpoint(),
		RedirectURL: o.redirectURL, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}, o.provider, nil
}

func (o *oidcAuth) begin(now time.Time) (state string, p oidcPending) {
	state = randomText(32)
	p = oidcPending{nonce: randomText(32), verifier: oauth2.GenerateVerifier(), expires: now.Add(oidcPendingTTL)}
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range o.pending {
		if !now.Before(v.expires) {
			delete(o.pending, k)
		}
	}
	o.pending[state] = p
	return state, p
}

// take removes and returns the pending sign-in of state: each is used once.
func (o *oidcAuth) take(state string, now time.Time) (oidcPending, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[state]
	delete(o.pending, state)
	return p, ok && now.Before(p.expires)
}

// role is the highest role the claims map to, or the default role.
func (o *oidcAuth) role(claims map[string]any) (Role, error) {
	var values []string
	switch v := claims[o.cfg.RolesClaim].(type) {
	case string:
		values = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
	}
	best := Role("")
	for _, v := range values {
		if r, ok := o.cfg.Roles[v]; ok && Role(r).rank() > best.rank() {
			best = Role(r)
		}
	}
	if best == "" {
		best = Role(o.cfg.DefaultRole)
	}
	if best.rank() == 0 {
		return "", fmt.Errorf("no role: the ID token's %s claim (%v) maps to no role of web.oidc.roles, and the policy gives no default_role", o.cfg.RolesClaim, values)
	}
	return best, nil
}

// name is how the person appears in sessions and the audit trail.
func (o *oidcAuth) name(claims map[string]any, subject string) string {
	if s, ok := claims[o.cfg.UsernameClaim].(string); ok && s != "" {
		if o.cfg.UsernameClaim != "email" || claims["email_verified"] != false {
			return s
		}
	}
	return "oidc:" + subject
}

// oidcLogin sends the browser to the provider.
func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request) {
	cfg, _, err := s.oidc.config(r.Context())
	if err != nil {
		s.log.Error("web: OpenID Connect", "error", err)
		s.fail(w, r, http.StatusBadGateway, err.Error())
		return
	}
	state, p := s.oidc.begin(s.now())
	// Lax, not Strict: the provider's redirect back is a cross-site
	// navigation, on which a Strict cookie would not come.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: state, Path: "/oidc/", MaxAge: int(oidcPendingTTL.Seconds()), HttpOnly: true,
		Secure: s.tls, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, cfg.AuthCodeURL(state, oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier)), http.StatusSeeOther)
}

// oidcCallback finishes a sign-in: the state must be the one this browser
// began with, the code is exchanged with the PKCE verifier, the ID token
// verified and its nonce matched. Every sign-in and refusal is an audit
// event with the client's address.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	client := clientAddr(r)
	details := map[string]string{"client": client, "method": "oidc", "issuer": s.oidc.cfg.Issuer}
	record := s.svc.Audited(r.Context(), AuditSignIn, "", "")
	refuse := func(code int, err error) {
		record(&err, details)
		s.log.Warn("web: OpenID Connect sign-in refused", "client", client, "error", err)
		s.fail(w, r, code, "sign-in refused: "+err.Error())
	}
	q := r.URL.Query()
	state := q.Get("state")
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/oidc/", MaxAge: -1, HttpOnly: true, Secure: s.tls, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(oidcCookie)
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		refuse(http.StatusForbidden, errors.New("the sign-in's state does not match this browser's: begin again"))
		return
	}
	pending, ok := s.oidc.take(state, now)
	if !ok {
		refuse(http.StatusForbidden, errors.New("the sign-in expired or was used already: begin again"))
		return
	}
	if e := q.Get("error"); e != "" {
		refuse(http.StatusUnauthorized, fmt.Errorf("the provider answered %s: %s", e, q.Get("error_description")))
		return
	}
	cfg, provider, err := s.oidc.config(r.Context())
	if err != nil {
		refuse(http.StatusBadGateway, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pending.verifier))
	if err != nil {
		refuse(http.StatusUnauthorized, fmt.Errorf("exchange the code: %w", err))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		refuse(http.StatusUnauthorized, errors.New("the provider sent no ID token"))
		return
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: s.oidc.cfg.ClientID, Now: s.now}).Verify(ctx, raw)
	if err != nil {
		refuse(http.StatusUnauthorized, fmt.Errorf("ID token: %w", err))
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pending.nonce)) != 1 {
		refuse(http.StatusUnauthorized, errors.New("the ID token's nonce is not this sign-in's"))
		return
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		refuse(http.StatusUnauthorized, fmt.Errorf("ID token claims: %w", err))
		return
	}
	name := s.oidc.name(claims, idt.Subject)
	details["user"], details["subject"] = name, idt.Subject
	role, err := s.oidc.role(claims)
	if err != nil {
		refuse(http.StatusForbidden, err)
		return
	}
	details["role"] = string(role)
	record(nil, details)
	id, ses := s.sessions.create(&User{Name: name, Role: role}, now)
	s.setCookie(w, sessionCookie, id, int(ses.expires.Sub(now).Seconds()))
	// The session cookie is SameSite=Strict and this response ends a
	// navigation the provider started: a redirect would carry it to the
	// overview without the cookie. A page of ours that moves on does.
	s.render(w, r, http.StatusOK, "continue", page{Title: "Signed in", Data: name, Refresh: "/"})
}
