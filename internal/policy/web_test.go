package policy

import (
	"strings"
	"testing"
	"time"
)

const webBase = `repositories: [{name: primary, url: "file:///r", key_file: /k}]
assets: [{name: a, kind: postgres, pgdata: /pg, dsn: host=/tmp, repositories: [primary]}]
`

func TestWebSection(t *testing.T) {
	t.Parallel()
	p, err := parseText(t, webBase)
	if err != nil {
		t.Fatal(err)
	}
	if p.Web.Listen != DefaultWebListen || time.Duration(p.Web.Session) != DefaultWebSession || p.Web.TLSCert != "" {
		t.Errorf("defaults: %+v", p.Web)
	}
	p, err = parseText(t, webBase+"web: {listen: '0.0.0.0:9443', tls_cert: /etc/c.pem, tls_key: /etc/k.pem, session: 2h}\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Web.Listen != "0.0.0.0:9443" || p.Web.TLSKey != "/etc/k.pem" || time.Duration(p.Web.Session) != 2*time.Hour {
		t.Errorf("set: %+v", p.Web)
	}
	p, err = parse([]byte(webBase+"web: {oidc: {issuer: 'https://id.example', client_id: lifeboat, client_secret: '${OIDC_SECRET}', roles: {dba: approver}, default_role: none}}\n"),
		"lifeboat.yaml", "/etc/lifeboat", lookupIn(map[string]string{"OIDC_SECRET": "s3cret"}), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if o := p.Web.OIDC; o == nil || o.ClientSecret.Reveal() != "s3cret" || o.Roles["dba"] != "approver" || o.DefaultRole != "" || o.RolesClaim != "groups" || o.UsernameClaim != "email" {
		t.Errorf("oidc: %+v", p.Web.OIDC)
	}
	for _, c := range []struct{ src, want string }{
		{"web: {listen: nowhere}", "web.listen: listen must be host:port"},
		{"web: {tls_cert: /c.pem}", "tls_cert and tls_key go together"},
		{"web: {session: 10s}", "session must be at least a minute"},
		{"web: {oidc: {issuer: 'https://id.example'}}", "web.oidc.client_id: client_id is required"},
		{"web: {oidc: {issuer: 'id.example', client_id: x}}", "issuer \"id.example\": write an absolute http(s) URL"},
		{"web: {oidc: {issuer: 'https://id.example', client_id: x, roles: {dba: root}}}", "web.oidc.roles.dba: role \"root\""},
		{"web: {oidc: {issuer: 'https://id.example', client_id: x, scope: y}}", "scope"},
		{"web: {port: 1}", "port"},
	} {
		_, err := parseText(t, webBase+c.src+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: %v, want one line saying %q", c.src, err, c.want)
		}
	}
}
