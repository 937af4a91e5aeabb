package metrics

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// The shipped monitoring files, relative to this package.
const (
	docsFile      = "../../docs/metrics.md"
	rulesFile     = "../../docs/monitoring/lifeboat-rules.yaml"
	dashboardFile = "../../docs/monitoring/lifeboat-dashboard.json"
)

// seriesRE finds the lifeboat series a PromQL expression or a document
// names. Identifiers in PromQL are [a-zA-Z_:][a-zA-Z0-9_:]*.
var seriesRE = regexp.MustCompile(`\blifeboat_[a-zA-Z0-9_:]+`)

// checkNames fails for every lifeboat_ name in text that the package does
// not export, and returns the names found.
func checkNames(t testing.TB, where, text string, exported []string) []string {
	t.Helper()
	found := seriesRE.FindAllString(text, -1)
	for _, n := range found {
		if !slices.Contains(exported, n) {
			t.Errorf("%s: uses %s, which the package does not export", where, n)
		}
	}
	return found
}

// TestDocsListEverySeries: docs/metrics.md has a table row for every
// series, and names no series that does not exist.
func TestDocsListEverySeries(t *testing.T) {
	exported := exportedNames(t)
	b, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	checkNames(t, docsFile, doc, exported)
	for _, n := range exported {
		if !strings.Contains(doc, "| `"+n+"` |") {
			t.Errorf("%s: no table row for %s", docsFile, n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// promDuration is Prometheus's duration syntax (as in "for:").
var promDuration = regexp.MustCompile(`^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$`)

// TestAlertingRules: the rules file is Prometheus rule syntax, has the
// alerts the issue asks for, and every expression uses only series the
// package exports (or Prometheus's own up).
func TestAlertingRules(t *testing.T) {
	exported := exportedNames(t)
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is a rule Prometheus would refuse
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no groups", rulesFile)
	}
	alerts := map[string]string{}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: a rule that is not an alert: %+v", g.Name, r)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r.Expr
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", r.Alert)
			}
			if r.For != "" && !promDuration.MatchString(r.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description annotation missing", r.Alert)
			}
			if used := checkNames(t, r.Alert, r.Expr, exported); len(used) == 0 && !strings.Contains(r.Expr, "up{") {
				t.Errorf("%s: expr %q names no lifeboat series", r.Alert, r.Expr)
			}
		}
	}
	// The alerts the issue asks for, by what they must look at.
	for alert, series := range map[string]string{
		"LifeboatBackupMissed":          "lifeboat_backup_last_success_timestamp_seconds",
		"LifeboatWALArchiveLagAboveRPO": "lifeboat_drill_rpo_target_seconds",
		"LifeboatCopyLagging":           "lifeboat_copy_lag_",
		"LifeboatDrillFailed":           "lifeboat_drill_last_passed",
		"LifeboatDrillRTOAboveTarget":   "lifeboat_drill_rto_target_seconds",
		"LifeboatDrillRPOAboveTarget":   "lifeboat_drill_rpo_target_seconds",
		"LifeboatCheckFailing":          "lifeboat_check_failing",
		"LifeboatDown":                  "up{",
		"LifeboatMetricsAbsent":         "absent(",
	} {
		expr, ok := alerts[alert]
		if !ok {
			t.Errorf("alert %s missing", alert)
		} else if !strings.Contains(expr, series) {
			t.Errorf("alert %s: expr %q does not use %s", alert, expr, series)
		}
	}
}

// TestAlertingRulesPromtool checks the rules with Prometheus's own parser
// and runs the unit tests in testdata/rules_*test.yaml (each alert fires on
// the series this package writes, and stays quiet when they are fine).
// promtool is not a build dependency; without it this test skips and
// TestAlertingRules still checks the structure.
func TestAlertingRulesPromtool(t *testing.T) {
	promtool := lookPromtool(t)
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", abs).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The tests name the rules file by a placeholder, since promtool
	// resolves rule_files relative to the test file's directory.
	dir := t.TempDir()
	for _, name := range []string{"rules_test.yaml", "rules_long_test.yaml"} {
		src, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		test := filepath.Join(dir, name)
		if err := os.WriteFile(test, bytes.ReplaceAll(src, []byte("@RULES@"), []byte(abs)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "test", "rules", test).CombinedOutput(); err != nil {
			t.Fatalf("promtool test rules %s: %v\n%s", name, err, out)
		}
	}
}

func lookPromtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.SkipOrFail(t, "metrics", "promtool not installed (Debian: apt-get install prometheus, or run scripts/install-test-deps.sh)")
	}
	return p
}

// dashboard is the part of a Grafana dashboard model the test reads.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// readDashboard decodes the dashboard and returns it with every panel,
// rows' panels included.
func readDashboard(t testing.TB) (*dashboard, []panel) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return &d, all
}

// TestDashboard: the Grafana dashboard is valid JSON in a current schema,
// picks its Prometheus data source through a variable, has the panels the
// issue asks for, and queries only series the package exports.
func TestDashboard(t *testing.T) {
	exported := exportedNames(t)
	d, panels := readDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d; want a current one (datasource references by uid need 36+)", d.SchemaVersion)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q", d.Title, d.UID)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" {
				t.Errorf("datasource variable %s: query %s, want \"prometheus\"", v.Name, v.Query)
			}
			hasDS = v.Name == "datasource"
			continue
		}
		checkNames(t, "variable "+v.Name, string(v.Query), exported)
	}
	if !hasDS {
		t.Error("no datasource variable called datasource")
	}

	ids := map[int]bool{}
	used := map[string]bool{}
	var titles []string
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		titles = append(titles, p.Title)
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range checkNames(t, "panel "+p.Title, tg.Expr, exported) {
				used[n] = true
			}
		}
	}
	for _, want := range []string{
		"Time since last successful backup", "Backup runs by result", "WAL archive lag",
		"Copy lag: oldest waiting", "Drill RTO vs target", "Drill RPO vs target", "Check failures",
	} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q", want)
		}
	}
	// Every series shows somewhere, so the dashboard does not silently
	// fall behind the package.
	for _, n := range exported {
		if !used[n] {
			t.Errorf("no panel queries %s", n)
		}
	}
}

// grafanaVars replaces the dashboard's template variables with values, so
// that its queries can go through promtool.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1h", "$__range", "1d",
	"$job", "lifeboat", "$asset", ".+",
)

// TestDashboardPromQL parses every dashboard query with promtool, as the
// expression of a recording rule in a throwaway rules file.
func TestDashboardPromQL(t *testing.T) {
	promtool := lookPromtool(t)
	_, panels := readDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, p := range panels {
		for _, tg := range p.Targets {
			rules = append(rules, rule{Record: "dashboard:query", Expr: grafanaVars.Replace(tg.Expr)})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (dashboard queries): %v\n%s", err, out)
	}
}
