package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/approval"
)

// Approving with a security key (docs/web.md, docs/approvals.md). An
// approver registers a key on the account page; the page shows the line
// for approvals.webauthn_signers, which whoever keeps the trust adds:
// the dashboard never writes the trust file, so a compromised dashboard
// host cannot add an approver. Approving a request is a WebAuthn
// assertion whose challenge is derived from the request's canonical text
// (approval.WebAuthnChallenge): the server keeps no state between the two
// steps, and the stored assertion is checked by internal/approval as an
// SSH signature is, by any host, with no dashboard.

// AuditWebAuthnRegister is the audit event of a security key registered on
// the account page (which does not make it an approver's key: the trust
// file does).
const AuditWebAuthnRegister = "web-webauthn-register"

// webauthnUser is a dashboard user as go-webauthn sees it.
type webauthnUser struct {
	name  string
	creds []webauthn.Credential
}

func (u webauthnUser) WebAuthnID() []byte {
	sum := sha256.Sum256([]byte("lifeboat web user\n" + u.name))
	return sum[:16]
}
func (u webauthnUser) WebAuthnName() string                       { return u.name }
func (u webauthnUser) WebAuthnDisplayName() string                { return u.name }
func (u webauthnUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// newWebAuthn is the relying party of the policy's approvals section; nil
// when the policy has no webauthn_signers.
func newWebAuthn(svc *app.Service) (*webauthn.WebAuthn, error) {
	ap := svc.Policy.Approvals
	if ap == nil || ap.WebAuthnSigners == "" {
		return nil, nil
	}
	return webauthn.New(&webauthn.Config{RPID: approval.RelyingPartyID(ap.WebAuthnOrigin), RPDisplayName: "Lifeboat",
		RPOrigins: []string{ap.WebAuthnOrigin}})
}

// signerKeys are the keys webauthn_signers lists for principal.
func (s *Server) signerKeys(principal string) ([]approval.WebAuthnKey, error) {
	keys, err := approval.ReadWebAuthnSigners(s.svc.Policy.Approvals.WebAuthnSigners)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nobody's key has been added yet
	}
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(keys, func(k approval.WebAuthnKey) bool { return k.Principal != principal }), nil
}

// accountData is the account page.
type accountData struct {
	WebAuthn bool
	Approver bool
	// Local is a local account, which may sign in with its keys;
	// SigninKeys is how many it has.
	Local      bool
	SigninKeys int
	File       string
	Origin     string
	Keys       []approval.WebAuthnKey
	Registered []string
	Problem    string
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	c := whoOf(r)
	d := accountData{WebAuthn: s.wa != nil, Approver: c.role.Allows(Approver), Local: s.accounts.Local(c.name)}
	if s.wa != nil {
		ap := s.svc.Policy.Approvals
		d.File, d.Origin = ap.WebAuthnSigners, ap.WebAuthnOrigin
		keys, err := s.signerKeys(c.name)
		if err != nil {
			d.Problem = err.Error()
		}
		d.Keys = keys
		if ses := s.sessionOf(r); ses != nil {
			d.Registered = s.sessions.registered(ses)
		}
	}
	if d.Local {
		if u, err := s.accounts.user(c.name); err == nil {
			d.SigninKeys = len(u.WebAuthn)
		}
	}
	s.render(w, r, http.StatusOK, "account", page{Title: "Account", Data: d, Script: d.WebAuthn && (d.Approver || d.Local)})
}

// registerOptions begins registering a security key: the creation options
// for navigator.credentials.create, the ceremony's state kept in the session.
func (s *Server) registerOptions(w http.ResponseWriter, r *http.Request) {
	ses := s.sessionOf(r)
	if s.wa == nil || ses == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "security keys are not configured (approvals.webauthn_signers), or this is not a browser session"})
		return
	}
	c := whoOf(r)
	if !s.accounts.Local(c.name) && !c.role.Allows(Approver) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "security keys are registered by local accounts (to sign in) and approvers (to approve)"})
		return
	}
	keys, _ := s.signerKeys(c.name)
	var exclude []protocol.CredentialDescriptor
	for _, k := range keys {
		exclude = append(exclude, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: k.CredentialID})
	}
	if u, err := s.accounts.user(c.name); err == nil {
		for _, k := range u.WebAuthn {
			exclude = append(exclude, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: k.ID})
		}
	}
	opts, data, err := s.wa.BeginRegistration(webauthnUser{name: c.name},
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired, ResidentKey: protocol.ResidentKeyRequirementDiscouraged}),
		webauthn.WithExclusions(exclude))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	s.sessions.setCeremony(ses, data)
	writeJSON(w, http.StatusOK, opts)
}

// register finishes registering a key and shows the line for
// webauthn_signers. Nothing is trusted by it.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	ses := s.sessionOf(r)
	c := whoOf(r)
	var err error
	details := map[string]string{"client": clientAddr(r), "user": c.name}
	defer func() { s.svc.Audited(r.Context(), AuditWebAuthnRegister, "", "")(&err, details) }()
	data := s.sessions.takeCeremony(ses)
	if s.wa == nil || data == nil {
		err = errors.New("no registration begun in this session: press the button again")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	parsed, perr := protocol.ParseCredentialCreationResponseBytes([]byte(r.PostFormValue("credential")))
	if perr != nil {
		err = fmt.Errorf("the security key's answer: %s", protocolMessage(perr))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	cred, cerr := s.wa.CreateCredential(webauthnUser{name: c.name}, *data, parsed)
	if cerr != nil {
		err = fmt.Errorf("the security key's answer: %s", protocolMessage(cerr))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	key := approval.WebAuthnKey{Principal: c.name, CredentialID: cred.ID, PublicKey: cred.PublicKey}
	details["key"] = key.Fingerprint()
	if s.accounts.Local(c.name) {
		if err = s.accounts.SaveCredential(c.name, *cred); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
	}
	if c.role.Allows(Approver) {
		s.sessions.addRegistered(ses, key.Line())
	}
	writeJSON(w, http.StatusOK, map[string]string{"line": key.Line(), "key": key.Fingerprint()})
}

// approveOptions are the request options for navigator.credentials.get:
// the challenge is the request's, the credentials those webauthn_signers
// lists for the signed-in approver.
func (s *Server) approveOptions(w http.ResponseWriter, r *http.Request) {
	if s.wa == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "security keys are not configured (approvals.webauthn_signers)"})
		return
	}
	c := whoOf(r)
	row, err := s.svc.Approval(r.Context(), r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	keys, err := s.signerKeys(c.name)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if len(keys) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%s lists no security key of %s: register one on the account page and have its line added", s.svc.Policy.Approvals.WebAuthnSigners, c.name)})
		return
	}
	b := base64.RawURLEncoding
	var allow []map[string]string
	for _, k := range keys {
		allow = append(allow, map[string]string{"type": "public-key", "id": b.EncodeToString(k.CredentialID)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"publicKey": map[string]any{
		"challenge": b.EncodeToString(approval.WebAuthnChallenge(row.Request)), "rpId": approval.RelyingPartyID(s.svc.Policy.Approvals.WebAuthnOrigin),
		"allowCredentials": allow, "userVerification": "required", "timeout": 120000,
	}, "text": string(row.Request.Canonical())})
}

// approveWithKey stores the security key's assertion as an approval of the
// request, after the checks of `lifeboat approve` (the service's
// AddApproval: it must count, or nothing is stored); an audit event names
// the approver and the client's address.
func (s *Server) approveWithKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	doc, err := approval.NewWebAuthnApproval(id, []byte(r.PostFormValue("credential")))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx := app.WithAuditDetails(r.Context(), map[string]string{"client": clientAddr(r), "user": whoOf(r).name, "method": "webauthn"})
	row, err := s.svc.AddApproval(ctx, id, doc)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	out := map[string]any{"request": id, "signatures": row.Signatures}
	if row.Verdict != nil {
		out["approvers"], out["required"] = len(row.Verdict.Approvers), row.Verdict.Required
	}
	writeJSON(w, http.StatusOK, out)
}

func protocolMessage(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		msg := pe.Details
		if pe.DevInfo != "" {
			msg += " (" + pe.DevInfo + ")"
		}
		return msg
	}
	return err.Error()
}

// webauthnJS is the one script of the dashboard: WebAuthn has no form
// without it. It turns the server's options into the browser's call and
// the key's answer into a form post carrying the page's CSRF token.
const webauthnJS = `"use strict";
const b64u = {
  enc: (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  dec: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)),
};
async function post(url, csrf, fields) {
  const res = await fetch(url, { method: "POST", body: new URLSearchParams({ csrf: csrf, ...fields }), credentials: "same-origin" });
  const text = await res.text();
  let data;
  try { data = JSON.parse(text); } catch (e) { data = { error: res.status + " " + res.statusText }; }
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function credentialJSON(c) {
  const r = c.response;
  const out = { id: c.id, rawId: b64u.enc(c.rawId), type: c.type, response: { clientDataJSON: b64u.enc(r.clientDataJSON) } };
  if (r.attestationObject) out.response.attestationObject = b64u.enc(r.attestationObject);
  if (r.authenticatorData) {
    out.response.authenticatorData = b64u.enc(r.authenticatorData);
    out.response.signature = b64u.enc(r.signature);
    if (r.userHandle) out.response.userHandle = b64u.enc(r.userHandle);
  }
  return JSON.stringify(out);
}
function say(msg, ok) {
  const el = document.getElementById("webauthn-status");
  el.textContent = msg;
  el.className = ok ? "ok" : "error";
}
document.addEventListener("DOMContentLoaded", () => {
  const sk = document.getElementById("signin-key");
  if (sk) sk.addEventListener("click", async () => {
    try {
      const opts = await post("/signin/key/options", sk.dataset.csrf,
        { user: document.getElementById("user").value, password: document.getElementById("password").value });
      const pk = opts.publicKey;
      pk.challenge = b64u.dec(pk.challenge);
      for (const c of pk.allowCredentials || []) c.id = b64u.dec(c.id);
      const cred = await navigator.credentials.get({ publicKey: pk });
      await post("/signin/key", sk.dataset.csrf, { credential: credentialJSON(cred) });
      location.assign("/");
    } catch (e) { say("Not signed in: " + e.message, false); }
  });
  const reg = document.getElementById("register-key");
  if (reg) reg.addEventListener("click", async () => {
    try {
      const opts = await post("/account/webauthn/options", reg.dataset.csrf, {});
      const pk = opts.publicKey;
      pk.challenge = b64u.dec(pk.challenge);
      pk.user.id = b64u.dec(pk.user.id);
      for (const c of pk.excludeCredentials || []) c.id = b64u.dec(c.id);
      const cred = await navigator.credentials.create({ publicKey: pk });
      await post("/account/webauthn/register", reg.dataset.csrf, { credential: credentialJSON(cred) });
      location.assign("/account");
    } catch (e) { say("Not registered: " + e.message, false); }
  });
  for (const b of document.querySelectorAll("button.approve-key")) b.addEventListener("click", async () => {
    const id = b.dataset.request;
    try {
      const opts = await post("/approvals/" + id + "/webauthn/options", b.dataset.csrf, {});
      const pk = opts.publicKey;
      pk.challenge = b64u.dec(pk.challenge);
      for (const c of pk.allowCredentials || []) c.id = b64u.dec(c.id);
      const cred = await navigator.credentials.get({ publicKey: pk });
      const res = await post("/approvals/" + id + "/webauthn", b.dataset.csrf, { credential: credentialJSON(cred) });
      location.assign("/approvals?approved=" + encodeURIComponent(id) + "&count=" + res.approvers);
    } catch (e) { say("Not approved: " + e.message, false); }
  });
});
`

// Signing in with a security key: a local account's password, then an
// assertion by one of the keys the account registered (in place of the
// TOTP code). The keys of sign-in live in the accounts file, as the
// passwords do; what approves is only ever webauthn_signers.

const keySigninCookie = "lifeboat_signin_key"

// keySigninTTL is how long a browser has between the password and the key.
const keySigninTTL = 2 * time.Minute

type keySignin struct {
	user    *User
	data    *webauthn.SessionData
	expires time.Time
}

type keySignins struct {
	mu      sync.Mutex
	pending map[string]keySignin
}

func (k *keySignins) put(p keySignin, now time.Time) string {
	id := randomText(32)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending == nil {
		k.pending = map[string]keySignin{}
	}
	for key, v := range k.pending {
		if !now.Before(v.expires) {
			delete(k.pending, key)
		}
	}
	k.pending[id] = p
	return id
}

func (k *keySignins) take(id string, now time.Time) (keySignin, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.pending[id]
	delete(k.pending, id)
	return p, ok && now.Before(p.expires)
}

// keySigninOptions checks the password (rate-limited as the sign-in form)
// and answers the options of navigator.credentials.get for the account's
// keys.
func (s *Server) keySigninOptions(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	client := clientAddr(r)
	name := r.PostFormValue("user")
	if !s.signinCSRF(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "the form's CSRF token is missing or wrong: reload the page and try again"})
		return
	}
	details := map[string]string{"client": client, "user": name, "method": "webauthn"}
	record := s.svc.Audited(r.Context(), AuditSignIn, "", "")
	if s.wa == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "security keys are not configured (approvals.webauthn_origin)"})
		return
	}
	if !s.limit.allowed(now, "client:"+client, "user:"+name) {
		err := errors.New("too many failed sign-ins: wait and try again")
		record(&err, details)
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": err.Error()})
		return
	}
	u, err := s.accounts.password(name, r.PostFormValue("password"))
	if err == nil && len(u.WebAuthn) == 0 {
		err = errSignIn // the same answer: which accounts have keys is not told
	}
	var opts *protocol.CredentialAssertion
	var data *webauthn.SessionData
	if err == nil {
		opts, data, err = s.wa.BeginLogin(webauthnUser{name: u.Name, creds: u.WebAuthn}, webauthn.WithUserVerification(protocol.VerificationRequired))
	}
	if err != nil {
		s.limit.fail(now, "client:"+client, "user:"+name)
		record(&err, details)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	id := s.keySignins.put(keySignin{user: u, data: data, expires: now.Add(keySigninTTL)}, now)
	http.SetCookie(w, &http.Cookie{Name: keySigninCookie, Value: id, Path: "/signin/", MaxAge: int(keySigninTTL.Seconds()), HttpOnly: true,
		Secure: s.tls, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, opts)
}

// keySignin finishes a sign-in with the key's assertion; every sign-in and
// refusal is an audit event with the client's address.
func (s *Server) keySignin(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	client := clientAddr(r)
	details := map[string]string{"client": client, "method": "webauthn"}
	record := s.svc.Audited(r.Context(), AuditSignIn, "", "")
	refuse := func(err error) {
		if u := details["user"]; u != "" {
			s.limit.fail(now, "client:"+client, "user:"+u)
		} else {
			s.limit.fail(now, "client:"+client)
		}
		record(&err, details)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
	}
	if !s.signinCSRF(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "the form's CSRF token is missing or wrong: reload the page and try again"})
		return
	}
	c, err := r.Cookie(keySigninCookie)
	var p keySignin
	ok := err == nil
	if ok {
		p, ok = s.keySignins.take(c.Value, now)
	}
	if !ok || s.wa == nil {
		refuse(errors.New("no sign-in with a security key begun from this browser, or it expired: begin again"))
		return
	}
	details["user"] = p.user.Name
	parsed, err := protocol.ParseCredentialRequestResponseBytes([]byte(r.PostFormValue("credential")))
	if err != nil {
		refuse(fmt.Errorf("the security key's answer: %s", protocolMessage(err)))
		return
	}
	cred, err := s.wa.ValidateLogin(webauthnUser{name: p.user.Name, creds: p.user.WebAuthn}, *p.data, parsed)
	if err != nil {
		refuse(fmt.Errorf("the security key's answer: %s", protocolMessage(err)))
		return
	}
	if cred.Authenticator.CloneWarning {
		refuse(errors.New("the security key's signature counter went back: it may have been cloned"))
		return
	}
	if err := s.accounts.SaveCredential(p.user.Name, *cred); err != nil {
		refuse(fmt.Errorf("record the key's signature counter: %w", err))
		return
	}
	record(nil, details)
	id, ses := s.sessions.create(p.user, now)
	s.setCookie(w, sessionCookie, id, int(ses.expires.Sub(now).Seconds()))
	s.setCookie(w, signinCookie, "", -1)
	writeJSON(w, http.StatusOK, map[string]string{"user": p.user.Name})
}

// signinCSRF checks the sign-in form's double-submit token.
func (s *Server) signinCSRF(r *http.Request) bool {
	c, err := r.Cookie(signinCookie)
	return err == nil && c.Value != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) == 1
}
