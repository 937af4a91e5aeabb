package policy

import "time"

// Audit is the policy's audit section (docs/audit.md): how long the
// audit trail's seals stay in the repositories, and whether events also
// go to syslog.
type Audit struct {
	// Retention is how long a seal of the audit chain is kept in a
	// repository, and locked there when the repository uses Object Lock;
	// expire removes none younger.
	Retention Duration
	// Syslog sends every event to the local syslog (and so journald) too.
	Syslog bool
	Line   int
}

// DefaultAuditRetention is Audit.Retention when the policy does not say:
// a year and a month, so that last year's trail is whole at the audit.
const DefaultAuditRetention = 400 * 24 * time.Hour

type auditYAML struct {
	Retention string `yaml:"retention"`
	Syslog    string `yaml:"syslog"`
}

// audit reads the audit section; its defaults when the policy has none.
func (c *converter) audit(raw *auditYAML) Audit {
	const path = "audit"
	a := Audit{Retention: Duration(DefaultAuditRetention), Line: c.idx.line(path, 0)}
	if raw == nil {
		return a
	}
	if c.idx.has(path + ".retention") {
		d := c.duration(path+".retention", raw.Retention)
		switch {
		case c.failed[path+".retention"]:
		case d < Duration(24*time.Hour):
			c.fail(path+".retention", a.Line, "retention must be at least a day, e.g. 400d (audit trails are commonly kept at least a year)")
		default:
			a.Retention = d
		}
	}
	a.Syslog = c.boolean(path+".syslog", raw.Syslog)
	return a
}
