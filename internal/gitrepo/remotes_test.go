package gitrepo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func TestParseRemotesFile(t *testing.T) {
	good := `# the organisation's repositories
https://git.example.com/drop/web.git

   /srv/git/infra.git   
git@github.com:drop/api.git # moved from gitlab
ssh://git@git.example.com:2222/drop/ops.git	# tab before the comment
https://git.example.com/drop/frag.git#keep-the-fragment
`
	got, err := ParseRemotesFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://git.example.com/drop/web.git", "/srv/git/infra.git", "git@github.com:drop/api.git",
		"ssh://git@git.example.com:2222/drop/ops.git", "https://git.example.com/drop/frag.git#keep-the-fragment"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, c := range []struct{ in, err string }{
		{"https://a/x.git\nrelative/path.git\n", "2: remote \"relative/path.git\": want a URL"},
		{"-uploadpack=evil\n", "1: remote \"-uploadpack=evil\" starts with '-'"},
		{"https://a/x.git https://a/y.git\n", "1: \"https://a/x.git https://a/y.git\" is not one remote"},
		{"\n\n  https://u:hunter2@a/x.git https://a/y.git\n", "3: \"https://u:***@a/x.git https://a/y.git\" is not one remote"},
		// Remote helpers that run a command, and transports git may not use.
		{"ext::sh%S-c%Stouch%S/tmp/pwned\n", "1: remote \"ext::sh%S-c%Stouch%S/tmp/pwned\": git's <transport>::<address> form"},
		{"fd::7\n", "1: remote \"fd::7\": git's <transport>::<address> form"},
		{"https://a/x.git\nhttp://u:hunter2@a/y.git\n", "2: remote \"http://u:***@a/y.git\": plain http is refused"},
		{"ftp://a/x.git\n", "1: remote \"ftp://a/x.git\": transport ftp is not one git may use"},
		{"ssh://git:hunter2@a/x.git\n", "1: remote \"ssh://git:***@a/x.git\": a password in a ssh URL"},
	} {
		_, err := ParseRemotesFile([]byte(c.in))
		if err == nil || !strings.HasPrefix(err.Error(), c.err) {
			t.Errorf("%q: got %v, want %q...", c.in, err, c.err)
		}
	}
}

func TestLoadRemotes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "org.txt")
	os.WriteFile(file, []byte("# org\nhttps://b.example.com/team/web.git\n/srv/git/infra.git\n/srv/git/Web\n"), 0o600)
	rs, err := LoadRemotes([]string{"https://a.example.com/web.git", "/srv/git/infra.git"}, file)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Name+" "+r.URL)
	}
	// Three remotes are called web (without case): all get a suffix from
	// their URL, whatever their order; infra listed twice is kept once.
	want := []string{"Web-dbacb00c /srv/git/Web", "infra /srv/git/infra.git",
		"web-17888411 https://b.example.com/team/web.git", "web-96f9429c https://a.example.com/web.git"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("got %q\nwant %q", names, want)
	}
	rs2, err := LoadRemotes([]string{"/srv/git/Web", "https://b.example.com/team/web.git", "/srv/git/infra.git", "https://a.example.com/web.git"}, "")
	if err != nil || !reflect.DeepEqual(rs, rs2) {
		t.Fatalf("names depend on the order of the list: %v vs %v (%v)", rs, rs2, err)
	}

	if _, err := LoadRemotes(nil, filepath.Join(dir, "missing.txt")); err == nil || !strings.Contains(err.Error(), "remotes_file: open") {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(file, []byte("# nothing yet\n\n"), 0o600)
	if _, err := LoadRemotes(nil, file); err == nil || !strings.Contains(err.Error(), "lists none") {
		t.Fatalf("empty file: %v", err)
	}
	os.WriteFile(file, []byte("https://a/x.git\nnot a remote\n"), 0o600)
	if _, err := LoadRemotes(nil, file); err == nil || !strings.HasPrefix(err.Error(), "remotes_file "+file+":2: ") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := LoadRemotes([]string{"https://u:pw@a/x.git", "https://u:other@a/x.git"}, ""); err == nil ||
		strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "other") {
		t.Fatalf("same remote with other credentials: %v", err)
	}
}

func TestBaseName(t *testing.T) {
	for in, want := range map[string]string{
		"https://git.example.com/drop/web.git":    "web",
		"https://git.example.com/drop/web.git/":   "web",
		"https://git.example.com/drop/web":        "web",
		"/srv/git/infra.git":                      "infra",
		"/srv/checkout/api/.git":                  "api",
		"/srv/checkout/api/":                      "api",
		"git@github.com:drop/api.git":             "api",
		"github.com:solo.git":                     "solo",
		"ssh://git@host:2222/~user/dots.git":      "dots",
		"file:///srv/git/a%20b.git":               "a_b",
		"https://host/..":                         "repo",
		"https://host/":                           "repo",
		"/srv/git/.hidden.git":                    "hidden",
		"https://host/org/weird name & stuff.git": "weird_name_stuff",
	} {
		if got := baseName(in); got != want {
			t.Errorf("baseName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:hunter2@git.example.com/x.git":        "https://user:***@git.example.com/x.git",
		"https://ghp_token123@github.com/x.git":             "https://***@github.com/x.git",
		"HTTP://tok@host/x":                                 "HTTP://***@host/x",
		"ssh://git@host/x.git":                              "ssh://git@host/x.git",
		"ssh://git:pw@host/x.git":                           "ssh://git:***@host/x.git",
		"git@github.com:drop/api.git":                       "git@github.com:drop/api.git",
		"/srv/git/infra.git":                                "/srv/git/infra.git",
		"fatal: unable to access 'https://u:p@h/x.git/': x": "fatal: unable to access 'https://u:***@h/x.git/': x",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPolicyRefusesRemoteHelpers: a remote git may not be pointed at is
// refused when the policy is read, naming the field and its line.
func TestPolicyRefusesRemoteHelpers(t *testing.T) {
	doc := `repositories:
  - name: r
    url: file:///srv/backup
    passphrase: correct-horse-battery-staple-2024
tiers:
  t: { rpo: 1d, rto: 1h }
assets:
  - name: src
    kind: git
    tier: t
    repositories: [r]
    schedule: "@daily"
    retention: { keep_within: 30d }
    remotes: ["ext::sh%S-c%Stouch%S/tmp/pwned"]
`
	_, err := policy.Parse([]byte(doc), "lifeboat.yaml", policy.Kinds{lifeboat.KindGit: kind{}})
	if err == nil || !strings.Contains(err.Error(), "lifeboat.yaml:") || !strings.Contains(err.Error(), "<transport>::<address>") {
		t.Fatalf("policy with an ext:: remote: %v", err)
	}
}
