package gitrepo

import (
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/gitrepo/gitrepotest"
)

// TestHTTPSCredentialsStayOffCommandLine backs up a remote served over
// https by git http-backend behind basic authentication, with the user
// and password in the remote's URL. git is run through a wrapper that
// records the command line and environment of every git process: the
// password reaches the server (the backup succeeds) but no command line,
// and a secret of this process's environment reaches no git.
func TestHTTPSCredentialsStayOffCommandLine(t *testing.T) {
	const secret = "planted-aws-secret-4f1c"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	f := newFixture(t)
	root := t.TempDir()
	src := gitrepotest.Source(t, root, "web", 4096)
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Dir: root,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}}
	authed := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "deploy" || p != "hunter2:x" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		authed++
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", ca) // one of the variables git keeps

	logDir := t.TempDir()
	wrapper := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\n" +
		"tr '\\0' ' ' < /proc/$$/cmdline >> " + filepath.Join(logDir, "cmdline") + "; echo >> " + filepath.Join(logDir, "cmdline") + "\n" +
		"tr '\\0' '\\n' < /proc/$$/environ >> " + filepath.Join(logDir, "environ") + "\n" +
		"exec " + gitBin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(root, src)
	remote := "https://deploy:hunter2%3Ax@" + strings.TrimPrefix(srv.URL, "https://") + "/" + filepath.ToSlash(rel)
	rs, err := LoadRemotes([]string{remote}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(t.Context(), f.r, BackupOptions{Asset: "source", Remotes: rs, MirrorDir: f.mirrors, Git: wrapper}); err != nil {
		t.Fatalf("backup over https with credentials: %v", err)
	}
	if authed == 0 {
		t.Fatal("the server saw no authenticated request")
	}
	cmdlines, _ := os.ReadFile(filepath.Join(logDir, "cmdline"))
	environ, _ := os.ReadFile(filepath.Join(logDir, "environ"))
	if !strings.Contains(string(cmdlines), "fetch") {
		t.Fatalf("the wrapper saw no fetch:\n%s", cmdlines)
	}
	if strings.Contains(string(cmdlines), "hunter2") {
		t.Errorf("the password is on a git command line:\n%s", cmdlines)
	}
	if strings.Contains(string(environ), secret) {
		t.Errorf("git's environment holds this process's AWS secret")
	}
	if !strings.Contains(string(environ), "GIT_ALLOW_PROTOCOL="+allowedProtocols) {
		t.Errorf("git runs without GIT_ALLOW_PROTOCOL:\n%s", environ)
	}
}

// TestAllowProtocolHolds: a transport left out of GIT_ALLOW_PROTOCOL is
// refused by git itself, whatever reached it.
func TestAllowProtocolHolds(t *testing.T) {
	g, err := newGitRunner("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := g.run(t.Context(), dir, "init", "--bare", "--quiet", "--", dir); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	_, err = g.run(t.Context(), dir, "ls-remote", "--", "ext::sh -c touch% "+marker, "HEAD")
	if err == nil || !strings.Contains(err.Error(), "transport 'ext' not allowed") {
		t.Fatalf("ls-remote over ext::: %v", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the ext:: command ran: %v", err)
	}
}
