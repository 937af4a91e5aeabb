package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestApprovalsSection(t *testing.T) {
	t.Parallel()
	src := repoOK + assetOK + `    production: true
approvals:
  allowed_signers: allowed_signers
  required: 3
  actions: [restore_production, unpin]
  expiry: 2h
`
	p, err := Parse([]byte(src), "/etc/lifeboat/lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	ap := p.Approvals
	if ap == nil || ap.AllowedSigners != "/etc/lifeboat/allowed_signers" || ap.Required != 3 || ap.Expiry.Std() != 2*time.Hour ||
		!slices.Equal(ap.Actions, []string{"restore_production", "unpin"}) || ap.Line != 12 {
		t.Fatalf("approvals: %+v", ap)
	}
	if !p.Assets[0].Production || !p.Protects(ActionUnpin) || p.Protects(ActionExpire) {
		t.Fatalf("production %v, protects unpin %v, expire %v", p.Assets[0].Production, p.Protects(ActionUnpin), p.Protects(ActionExpire))
	}

	// Defaults: two approvers, a day to sign; no section protects nothing.
	p, err = Parse([]byte(repoOK+assetOK+"approvals: { allowed_signers: /a, actions: [expire] }\n"), "lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if p.Approvals.Required != DefaultApprovalsRequired || p.Approvals.Expiry.Std() != DefaultApprovalExpiry || p.Assets[0].Production {
		t.Fatalf("defaults: %+v, production %v", p.Approvals, p.Assets[0].Production)
	}
	// Security keys only: no allowed_signers needed; the origin is kept
	// as scheme://host[:port].
	p, err = Parse([]byte(repoOK+assetOK+"approvals: { webauthn_signers: keys, webauthn_origin: 'https://lifeboat.example:8420/', actions: [expire] }\n"), "/etc/lifeboat/lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if ap := p.Approvals; ap.AllowedSigners != "" || ap.WebAuthnSigners != "/etc/lifeboat/keys" || ap.WebAuthnOrigin != "https://lifeboat.example:8420" {
		t.Fatalf("webauthn: %+v", ap)
	}
	p, err = Parse([]byte(repoOK+assetOK), "lifeboat.yaml", testKinds)
	if err != nil || p.Approvals != nil || p.Protects(ActionExpire) {
		t.Fatalf("no section: %v %+v", err, p.Approvals)
	}
}

func TestApprovalsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"every problem at its line", repoOK + assetOK + `    production: yes please
approvals:
  required: 0
  actions: [restore_production, expier, drop_database]
  expiry: -1h
`, []string{
			`lifeboat.yaml:11: assets[0].production: production "yes please" is not true or false`,
			`lifeboat.yaml:12: approvals.allowed_signers: allowed_signers is required: the OpenSSH allowed_signers file naming the approvers ("<principal> <key type> <key>" per line), or webauthn_signers for security keys registered in the dashboard`,
			`lifeboat.yaml:13: approvals.required: required "0": write how many approvers must sign, a whole number from 1 to 100`,
			`lifeboat.yaml:14: approvals.actions[1]: unknown action "expier" (did you mean "expire"?)`,
			`lifeboat.yaml:14: approvals.actions[2]: unknown action "drop_database" (known: restore_production, expire, unpin, key_remove, retention_reduce)`,
			`lifeboat.yaml:15: approvals.expiry: expiry must be positive, e.g. 24h`,
		}},
		{"no actions", repoOK + assetOK + "approvals:\n  allowed_signers: /etc/a\n", []string{
			`lifeboat.yaml:11: approvals.actions: actions is required: the actions that need approval, of restore_production, expire, unpin, key_remove, retention_reduce`,
		}},
		{"webauthn without its origin", repoOK + assetOK + "approvals:\n  webauthn_signers: /etc/w\n  webauthn_origin: lifeboat.example\n  actions: [expire]\n", []string{
			`lifeboat.yaml:13: approvals.webauthn_origin: webauthn_origin "lifeboat.example": write the dashboard's address as browsers reach it, e.g. https://lifeboat.example:8420 (the security keys are bound to its host)`,
		}},
		{"unknown key", repoOK + assetOK + "approvals:\n  allowed_signer: /etc/a\n", []string{
			`lifeboat.yaml:12: unknown key "allowed_signer" in approvals (did you mean "allowed_signers"?)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.src), "lifeboat.yaml", testKinds)
			if err == nil {
				t.Fatal("accepted")
			}
			var got []string
			for _, fe := range problemsOf(t, err) {
				got = append(got, fe.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
