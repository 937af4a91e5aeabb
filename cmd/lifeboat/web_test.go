package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWebCommands: web user add prints the TOTP secret, web token create
// prints a token the API takes, and lifeboat web serves the numbers
// status prints; bad input is one line and exit 2.
func TestWebCommands(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o600, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.mustRun("backup", "app-config")

	add := exec.Command(e.bin, "-c", e.policy, "web", "user", "add", "ada", "--role", "admin", "--password-stdin")
	add.Stdin = strings.NewReader("correct horse battery\n")
	out, err := add.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "otpauth://totp/Lifeboat:ada") || !strings.Contains(string(out), "TOTP secret: ") {
		t.Fatalf("web user add: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"web", "user", "add", "bob", "--role", "root", "--password-stdin"}, {"web", "token", "create", "--role", "god"}} {
		if r := e.run(args...); r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "unknown role") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming the role", args, r.code, r.stderr)
		}
	}
	token := strings.TrimSpace(e.mustRun("web", "token", "create", "--role", "viewer"))
	if !strings.HasPrefix(token, "lbt_") {
		t.Fatalf("token %q", token)
	}

	srv, addr := startDashboard(t, e, "web", "--listen", "127.0.0.1:0")
	var rows []struct {
		Name       string    `json:"name"`
		LastBackup time.Time `json:"last_backup"`
		State      string    `json:"state"`
	}
	if code := getJSON(t, addr, "/api/assets", token, &rows); code != http.StatusOK {
		t.Fatalf("GET /api/assets: %d", code)
	}
	var status []struct {
		Asset            string    `json:"asset"`
		LastSnapshotTime time.Time `json:"last_snapshot_time"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("status", "--json")), &status); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Name != "app-config" || !rows[0].LastBackup.Equal(status[0].LastSnapshotTime) || rows[0].State != "ok" {
		t.Errorf("API %+v, status %+v", rows, status)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("lifeboat web after SIGTERM: %v", err)
	}
	audit := e.mustRun("audit", "export", "--format", "jsonl")
	for _, typ := range []string{"web-user-add", "web-token-create"} {
		if !strings.Contains(audit, typ) {
			t.Errorf("the audit trail lacks %s", typ)
		}
	}
}

// TestServeHTTP: serve --http serves the dashboard beside the schedules
// (the API answers a token), an address it cannot use stops it before
// anything runs (one line, exit 2), and SIGTERM stops both with exit 0.
func TestServeHTTP(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o600, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.mustRun("backup", "app-config")
	token := strings.TrimSpace(e.mustRun("web", "token", "create", "--role", "viewer"))
	if r := e.run("serve", "--http", "nowhere"); r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, `"nowhere"`) {
		t.Errorf("serve --http nowhere: exit %d, stderr %q; want 2 and one line naming the address", r.code, r.stderr)
	}
	srv, addr := startDashboard(t, e, "serve", "--http", "127.0.0.1:0")
	var rows []struct {
		Name string `json:"name"`
	}
	if code := getJSON(t, addr, "/api/assets", token, &rows); code != http.StatusOK || len(rows) != 1 || rows[0].Name != "app-config" {
		t.Fatalf("GET /api/assets from serve --http: %d %+v", code, rows)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("serve --http after SIGTERM: %v", err)
	}
}

// startDashboard runs lifeboat with args (web or serve --http, listening
// on port 0) and returns the process and the address it says it serves.
func startDashboard(t *testing.T, e *env, args ...string) (*exec.Cmd, string) {
	t.Helper()
	srv := exec.Command(e.bin, append([]string{"-c", e.policy}, args...)...)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "http://127.0.0.1:") {
		t.Fatalf("lifeboat %v said %q: %v", args, line, err)
	}
	return srv, strings.TrimSpace(line[strings.LastIndex(line, " ")+1:])
}

// getJSON GETs the API path at addr with a bearer token into v and
// returns the status code.
func getJSON(t *testing.T, addr, path, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode
}
