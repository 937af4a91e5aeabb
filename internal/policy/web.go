package policy

import (
	"net"
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
	Line    int
}

// DefaultWebListen is Web.Listen when the policy does not say: loopback,
// so that nothing is exposed until the operator decides it.
const DefaultWebListen = "127.0.0.1:8420"

// DefaultWebSession is Web.Session when the policy does not say.
const DefaultWebSession = 12 * time.Hour

type webYAML struct {
	Listen  string            `yaml:"listen"`
	TLSCert string            `yaml:"tls_cert"`
	TLSKey  string            `yaml:"tls_key"`
	Session string            `yaml:"session"`
	OIDC    map[string]string `yaml:"oidc"`
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
		// Accepting the keys and signing nobody in through them would
		// let an operator believe the identity provider guards the
		// dashboard.
		c.fail(path+".oidc", w.Line, "OpenID Connect sign-in is not implemented yet: remove oidc and use local accounts (lifeboat web user add)")
	}
	return w
}
