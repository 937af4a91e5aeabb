package policy

import (
	"strings"
	"testing"
)

func TestRunbookSection(t *testing.T) {
	t.Parallel()
	p, err := parseText(t, webBase)
	if err != nil {
		t.Fatal(err)
	}
	if p.Runbook.Path != "" {
		t.Errorf("no runbook section, yet a path: %+v", p.Runbook)
	}
	p, err = parseText(t, webBase+"runbook: {path: state/runbook.html, format: html}\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Runbook.Path != "/etc/lifeboat/state/runbook.html" || p.Runbook.Format != RunbookHTML {
		t.Errorf("runbook %+v: want the path from the policy's directory, html", p.Runbook)
	}
	if p, err = parseText(t, webBase+"runbook: {path: /var/lib/lifeboat/runbook.md}\n"); err != nil || p.Runbook.Format != RunbookMarkdown {
		t.Errorf("default format: %+v, %v", p.Runbook, err)
	}
	for _, c := range []struct{ src, want string }{
		{"runbook: {format: md}", "runbook.path: runbook needs path"},
		{"runbook: {path: /r.md, format: pdf}", "runbook.format: format must be md or html"},
		{"runbook: {path: /r.md, where: x}", "where"},
	} {
		_, err := parseText(t, webBase+c.src+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
}
