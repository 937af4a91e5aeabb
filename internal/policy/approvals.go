package policy

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Approvals is the policy's approvals section: which actions need the
// approval of other people before they run, and who may approve
// (docs/approvals.md).
type Approvals struct {
	// AllowedSigners is the absolute path of the OpenSSH allowed_signers
	// file naming the approvers and their keys.
	AllowedSigners string
	// Required is how many approvers other than the requester must sign.
	Required int
	// Actions are the protected actions, by the names of ApprovalActions.
	Actions []string
	// Expiry is how long a request stays open.
	Expiry Duration
	// WebAuthnSigners is the absolute path of the file listing approvers'
	// security keys registered in the dashboard ("" when none): like
	// allowed_signers, it is written by whoever keeps the trust, never by
	// the dashboard.
	WebAuthnSigners string
	// WebAuthnOrigin is the dashboard's origin as browsers reach it
	// (https://host:port); its host is the WebAuthn relying party id.
	WebAuthnOrigin string
	Line           int
}

// The actions approvals can protect.
const (
	// ActionRestoreProduction is a restore with --production, or one onto
	// a production asset's own location.
	ActionRestoreProduction = "restore_production"
	// ActionExpire is an expire (or forget) that deletes snapshots or WAL.
	ActionExpire = "expire"
	// ActionUnpin removes a legal hold.
	ActionUnpin = "unpin"
	// ActionKeyRemove removes a repository key.
	ActionKeyRemove = "key_remove"
	// ActionRetentionReduce is an expire under retention rules that keep
	// less than the ones the repository last ran with.
	ActionRetentionReduce = "retention_reduce"
)

// ApprovalActions are the action names approvals.actions takes.
func ApprovalActions() []string {
	return []string{ActionRestoreProduction, ActionExpire, ActionUnpin, ActionKeyRemove, ActionRetentionReduce}
}

// Defaults of Approvals.
const (
	DefaultApprovalsRequired = 2
	DefaultApprovalExpiry    = 24 * time.Hour
)

// Protects reports whether the policy makes action wait for approval.
func (p *Policy) Protects(action string) bool {
	return p.Approvals != nil && slices.Contains(p.Approvals.Actions, action)
}

type approvalsYAML struct {
	AllowedSigners string   `yaml:"allowed_signers"`
	Required       string   `yaml:"required"`
	Actions        []string `yaml:"actions"`
	Expiry         string   `yaml:"expiry"`
	WebAuthn       string   `yaml:"webauthn_signers"`
	WebAuthnOrigin string   `yaml:"webauthn_origin"`
}

// approvals reads the approvals section; nil when the policy has none.
func (c *converter) approvals(raw *approvalsYAML) *Approvals {
	if raw == nil {
		return nil
	}
	const path = "approvals"
	ap := &Approvals{Line: c.idx.line(path, 0), Required: DefaultApprovalsRequired, Expiry: Duration(DefaultApprovalExpiry)}
	file := func(key, raw string) string {
		f := c.nonEmpty(path+"."+key, raw)
		if f != "" && !filepath.IsAbs(f) {
			f = filepath.Join(c.base, f)
		}
		if f == "" {
			return ""
		}
		return filepath.Clean(f)
	}
	ap.AllowedSigners = file("allowed_signers", raw.AllowedSigners)
	ap.WebAuthnSigners = file("webauthn_signers", raw.WebAuthn)
	if ap.WebAuthnSigners != "" {
		ap.WebAuthnOrigin = c.expand(path+".webauthn_origin", raw.WebAuthnOrigin)
		if u, err := url.Parse(ap.WebAuthnOrigin); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			c.fail(path+".webauthn_origin", ap.Line, fmt.Sprintf("webauthn_origin %q: write the dashboard's address as browsers reach it, e.g. https://lifeboat.example:8420 (the security keys are bound to its host)", ap.WebAuthnOrigin))
		} else {
			ap.WebAuthnOrigin = u.Scheme + "://" + u.Host
		}
	} else if raw.WebAuthnOrigin != "" {
		c.fail(path+".webauthn_origin", ap.Line, "webauthn_origin goes with webauthn_signers: set both or neither")
	}
	if ap.AllowedSigners == "" && ap.WebAuthnSigners == "" && !c.failed[path+".allowed_signers"] {
		c.fail(path+".allowed_signers", ap.Line, "allowed_signers is required: the OpenSSH allowed_signers file naming the approvers (\"<principal> <key type> <key>\" per line), or webauthn_signers for security keys registered in the dashboard")
	}
	if s := c.expand(path+".required", raw.Required); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			c.fail(path+".required", ap.Line, fmt.Sprintf("required %q: write how many approvers must sign, a whole number from 1 to 100", s))
		} else {
			ap.Required = n
		}
	}
	if c.idx.has(path + ".expiry") {
		if d := c.duration(path+".expiry", raw.Expiry); d > 0 {
			ap.Expiry = d
		} else if !c.failed[path+".expiry"] {
			c.fail(path+".expiry", ap.Line, "expiry must be positive, e.g. 24h")
		}
	}
	known := ApprovalActions()
	for i, a := range raw.Actions {
		ip := itemPath(path+".actions", i)
		a = strings.TrimSpace(c.expand(ip, a))
		if c.failed[ip] {
			continue
		}
		if !slices.Contains(known, a) {
			msg := fmt.Sprintf("unknown action %q (known: %s)", a, strings.Join(known, ", "))
			if s := closest(a, known); s != "" {
				msg = fmt.Sprintf("unknown action %q (did you mean %q?)", a, s)
			}
			c.fail(ip, ap.Line, msg)
			continue
		}
		if !slices.Contains(ap.Actions, a) {
			ap.Actions = append(ap.Actions, a)
		}
	}
	if len(raw.Actions) == 0 && !c.failed[path+".actions"] {
		c.fail(path+".actions", ap.Line, "actions is required: the actions that need approval, of "+strings.Join(known, ", "))
	}
	return ap
}

// boolean reads a key written true or false; false when absent.
func (c *converter) boolean(path, raw string) bool {
	s := c.expand(path, raw)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		key := path[strings.LastIndexByte(path, '.')+1:]
		c.fail(path, 0, fmt.Sprintf("%s %q is not true or false", key, s))
		return false
	}
	return b
}
