package policy

import (
	"strings"
	"testing"
	"time"
)

func TestReportSection(t *testing.T) {
	t.Parallel()
	p, err := parseText(t, webBase)
	if err != nil {
		t.Fatal(err)
	}
	if p.Report.Path != "" {
		t.Errorf("no report section, yet a path: %+v", p.Report)
	}
	p, err = parseText(t, webBase+"report: {path: state/dr.md, format: md, since: 90d}\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Report.Path != "/etc/lifeboat/state/dr.md" || p.Report.Format != "md" || p.Report.Since != 90*24*time.Hour {
		t.Errorf("report %+v: want the path from the policy's directory, md, 90 days", p.Report)
	}
	if p, err = parseText(t, webBase+"report: {path: /var/lib/lifeboat/dr.html}\n"); err != nil || p.Report.Format != "html" || p.Report.Since != 0 {
		t.Errorf("defaults: %+v, %v", p.Report, err)
	}
	for _, c := range []struct{ src, want string }{
		{"report: {format: md}", "report.path: report needs path"},
		{"report: {path: /r.md, format: pdf}", "report.format: format must be md, html or json"},
		{"report: {path: /r.md, since: soon}", "report.since: since must be a duration"},
		{"report: {path: /r.md, where: x}", "where"},
	} {
		_, err := parseText(t, webBase+c.src+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
}
