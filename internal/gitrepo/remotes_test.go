package gitrepo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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
