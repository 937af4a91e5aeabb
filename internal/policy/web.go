package policy

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Web is the policy's web section (docs/web.md): where the dashboard
// listens and its certificate. The dashboard is bound to loopback unless
// the policy says otherwise.
type Web struct {
	Listen  string
	TLSCert string
	TLSKey  string
	// Session is how long a browser session lasts after sign-in.
	Session Duration
	// OIDC is sign-in through an OpenID Connect provider; nil when the
	// policy has none (local accounts only).
	OIDC *OIDC
	Line int
}

// OIDC is the web section's oidc: the identity provider the dashboard
// signs people in through (authorization code flow with PKCE), and how a
// signed-in person's role is found.
type OIDC struct {
	Issuer       string
	ClientID     string
	ClientSecret Secret
	// RedirectURL is the dashboard's /oidc/callback as browsers reach it,
	// registered with the provider; "" derives it from web.listen.
	RedirectURL string
	// RolesClaim is the ID token claim (a string or a list of strings)
	// looked up in Roles; UsernameClaim names the person (email, else sub).
	RolesClaim    string
	UsernameClaim string
	// Roles maps a value of RolesClaim to a role; the highest role
	// matched wins. DefaultRole is the role of a person none matches,
	// "" to refuse them.
	Roles       map[string]string
	DefaultRole string
}

// WebRoles are the dashboard's roles, least first (internal/web).
var WebRoles = []string{"viewer", "operator", "approver", "admin"}

// DefaultWebListen is Web.Listen when the policy does not say: loopback,
// so that nothing is exposed until the operator decides it.
const DefaultWebListen = "127.0.0.1:8420"

// DefaultWebSession is Web.Session when the policy does not say.
const DefaultWebSession = 12 * time.Hour

type webYAML struct {
	Listen  string    `yaml:"listen"`
	TLSCert string    `yaml:"tls_cert"`
	TLSKey  string    `yaml:"tls_key"`
	Session string    `yaml:"session"`
	OIDC    *oidcYAML `yaml:"oidc"`
}

type oidcYAML struct {
	Issuer        string            `yaml:"issuer"`
	ClientID      string            `yaml:"client_id"`
	ClientSecret  string            `yaml:"client_secret"`
	RedirectURL   string            `yaml:"redirect_url"`
	RolesClaim    string            `yaml:"roles_claim"`
	UsernameClaim string            `yaml:"username_claim"`
	Roles         map[string]string `yaml:"roles"`
	DefaultRole   string            `yaml:"default_role"`
}

// web reads the web section; its defaults when the policy has none.
func (c *converter) web(raw *webYAML) Web {
	const path = "web"
	w := Web{Listen: DefaultWebListen, Session: Duration(DefaultWebSession), Line: c.idx.line(path, 0)}
	if raw == nil {
		return w
	}
	if c.idx.has(path + ".listen") {
		w.Listen = c.nonEmpty(path+".listen", raw.Listen)
		if _, _, err := net.SplitHostPort(w.Listen); w.Listen != "" && err != nil {
			c.fail(path+".listen", w.Line, "listen must be host:port, e.g. 127.0.0.1:8420")
		}
	}
	w.TLSCert = c.expand(path+".tls_cert", raw.TLSCert)
	w.TLSKey = c.expand(path+".tls_key", raw.TLSKey)
	if (w.TLSCert == "") != (w.TLSKey == "") {
		c.fail(path+".tls_cert", w.Line, "tls_cert and tls_key go together: set both or neither")
	}
	if c.idx.has(path + ".session") {
		d := c.duration(path+".session", raw.Session)
		switch {
		case c.failed[path+".session"]:
		case d < Duration(time.Minute):
			c.fail(path+".session", w.Line, "session must be at least a minute, e.g. 12h")
		default:
			w.Session = d
		}
	}
	if raw.OIDC != nil {
		w.OIDC = c.oidc(path+".oidc", raw.OIDC, w.Line)
	}
	return w
}

// oidc reads web.oidc. Everything a sign-in depends on is checked here,
// so that a dashboard never starts with a provider it cannot use.
func (c *converter) oidc(path string, raw *oidcYAML, line int) *OIDC {
	o := &OIDC{
		Issuer:        c.expand(path+".issuer", raw.Issuer),
		ClientID:      c.expand(path+".client_id", raw.ClientID),
		ClientSecret:  Secret(c.expand(path+".client_secret", raw.ClientSecret)),
		RedirectURL:   c.expand(path+".redirect_url", raw.RedirectURL),
		RolesClaim:    c.expand(path+".roles_claim", raw.RolesClaim),
		UsernameClaim: c.expand(path+".username_claim", raw.UsernameClaim),
		DefaultRole:   "viewer",
		Roles:         map[string]string{},
	}
	absURL := func(key, v string) {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			c.fail(path+"."+key, line, fmt.Sprintf("%s %q: write an absolute http(s) URL", key, v))
		}
	}
	switch {
	case o.Issuer == "" && !c.failed[path+".issuer"]:
		c.fail(path+".issuer", line, "issuer is required: the provider's issuer URL (its /.well-known/openid-configuration is read)")
	case o.Issuer != "":
		absURL("issuer", o.Issuer)
	}
	if o.ClientID == "" && !c.failed[path+".client_id"] {
		c.fail(path+".client_id", line, "client_id is required: the dashboard's client id at the provider")
	}
	if o.RedirectURL != "" {
		absURL("redirect_url", o.RedirectURL)
	}
	if o.RolesClaim == "" {
		o.RolesClaim = "groups"
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = "email"
	}
	role := func(key, v string) string {
		if !slices.Contains(WebRoles, v) {
			c.fail(key, line, fmt.Sprintf("role %q: use %s", v, strings.Join(WebRoles, ", ")))
			return ""
		}
		return v
	}
	for group, r := range raw.Roles {
		if r = role(path+".roles."+group, c.expand(path+".roles."+group, r)); r != "" {
			o.Roles[group] = r
		}
	}
	if c.idx.has(path + ".default_role") {
		switch d := c.expand(path+".default_role", raw.DefaultRole); d {
		case "", "none":
			o.DefaultRole = ""
		default:
			o.DefaultRole = role(path+".default_role", d)
		}
	}
	return o
}
