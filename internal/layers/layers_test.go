package layers

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/lifeboat-dr/lifeboat/"

// imports maps every package of the module (by path below the module) to
// the module's packages it imports, tests left out.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		g[pkg] = []string{}
		for _, imp := range f[1:] {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				g[pkg] = append(g[pkg], rest)
			}
		}
	}
	return g
}

// kinds are the packages that implement asset.Kind.
var kinds = []string{"internal/postgres", "internal/pgdump", "internal/sqlite", "internal/files", "internal/gitrepo", "internal/bucket"}

// rule is one sentence of docs/ARCHITECTURE.md's "Import rules".
type rule struct {
	name string
	// applies says which importing packages the rule constrains.
	applies func(pkg string) bool
	// forbidden says which imports break it.
	forbidden func(pkg, imp string) bool
}

func under(prefixes ...string) func(string) bool {
	return func(pkg string) bool {
		for _, p := range prefixes {
			if pkg == p || strings.HasPrefix(pkg, p+"/") {
				return true
			}
		}
		return false
	}
}

var rules = []rule{
	{"the domain vocabulary and the leaf packages import no package of ours",
		under("internal/lifeboat", "internal/durable", "internal/chunker", "internal/retention", "internal/hugemem", "internal/tlscert",
			"internal/childenv", "internal/walstream", "internal/walsock"),
		func(_, _ string) bool { return true }},
	{"nothing imports cmd/",
		func(string) bool { return true },
		func(_, imp string) bool { return strings.HasPrefix(imp, "cmd/") }},
	{"storage knows nothing of repositories, policies or asset kinds",
		under("internal/storage"),
		func(_, imp string) bool { return !under("internal/storage")(imp) && imp != "internal/durable" }},
	{"the repository format knows storage only",
		under("internal/repo"),
		func(pkg, imp string) bool {
			return !under("internal/storage", "internal/repo")(imp) && imp != "internal/durable" && imp != "internal/hugemem"
		}},
	{"asset (the Kind interface) knows the vocabulary, the policy, the repository and the evidence only",
		under("internal/asset"),
		func(_, imp string) bool {
			return !slices.Contains([]string{"internal/lifeboat", "internal/policy", "internal/repo", "internal/evidence"}, imp)
		}},
	{"drill reports are evidence: the evidence package knows the repository only",
		under("internal/evidence"),
		func(_, imp string) bool { return imp != "internal/repo" }},
	{"approvals know the repository and storage only",
		under("internal/approval"),
		func(_, imp string) bool { return imp != "internal/repo" && imp != "internal/storage" }},
	{"a kind does not import another kind, the service, the daemon or the drill framework",
		func(pkg string) bool { return slices.Contains(kinds, pkg) },
		func(_, imp string) bool {
			return slices.Contains(kinds, imp) || under("internal/app", "internal/daemon", "internal/drill")(imp)
		}},
	{"kinds are reached through the registry: only internal/app imports a kind package",
		func(pkg string) bool { return !slices.Contains(kinds, pkg) && !under("bench", "internal/app")(pkg) },
		func(_, imp string) bool { return slices.Contains(kinds, imp) }},
	{"the daemon runs on the service, never on the CLI or a kind",
		under("internal/daemon"),
		func(_, imp string) bool { return strings.HasPrefix(imp, "cmd/") || slices.Contains(kinds, imp) }},
	{"the dashboard runs on the service, never on the CLI, a kind, a catalog or the daemon",
		under("internal/web"),
		func(_, imp string) bool {
			return strings.HasPrefix(imp, "cmd/") || slices.Contains(kinds, imp) || under("internal/catalog", "internal/fleet", "internal/daemon")(imp)
		}},
}

// allowed are the known exceptions, each with its reason; the test fails
// when one is no longer needed, so the list only shrinks.
var allowed = map[[2]string]string{
	{"cmd/lifeboat", "internal/postgres"}: "wal-push and wal-fetch are PostgreSQL's archive_command and restore_command",
}

func TestImportRules(t *testing.T) {
	g := imports(t)
	if len(g) < 20 {
		t.Fatalf("go list found %d packages; expected the whole module", len(g))
	}
	used := map[[2]string]bool{}
	for _, r := range rules {
		for pkg, imps := range g {
			if !r.applies(pkg) {
				continue
			}
			for _, imp := range imps {
				if !r.forbidden(pkg, imp) {
					continue
				}
				if _, ok := allowed[[2]string{pkg, imp}]; ok {
					used[[2]string{pkg, imp}] = true
					continue
				}
				t.Errorf("%s imports %s: breaks %q", pkg, imp, r.name)
			}
		}
	}
	for edge, why := range allowed {
		if !used[edge] {
			t.Errorf("allowed exception %s -> %s (%s) is no longer needed: remove it from the list and from docs/ARCHITECTURE.md", edge[0], edge[1], why)
		}
	}
}

// TestDocumentStatesTheRules: every rule and exception the test enforces
// is written in docs/ARCHITECTURE.md, in the same words.
func TestDocumentStatesTheRules(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	for _, r := range rules {
		if !strings.Contains(text, r.name) {
			t.Errorf("docs/ARCHITECTURE.md does not state the rule %q", r.name)
		}
	}
	for edge := range allowed {
		if !strings.Contains(text, "`"+edge[0]+"` → `"+edge[1]+"`") {
			t.Errorf("docs/ARCHITECTURE.md does not list the exception %s → %s", edge[0], edge[1])
		}
	}
	for _, k := range kinds {
		if !strings.Contains(text, "`"+k+"`") {
			t.Errorf("docs/ARCHITECTURE.md does not describe the kind package %s", k)
		}
	}
}
