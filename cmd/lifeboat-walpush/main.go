// Command lifeboat-walpush is archive_command's fast path: it takes the
// arguments of "lifeboat -c POLICY wal-push ASSET %p", hands the segment to
// the lifeboat serve of the policy's state directory over its socket
// (internal/walsock) and exits 0 once the daemon has stored it durably.
// Whenever it cannot do that exactly as lifeboat would (no daemon, a
// daemon whose policy archives the asset elsewhere, a policy it does not
// read plainly, root, any other arguments), it runs lifeboat itself with
// the same arguments, so the result never differs from lifeboat
// wal-push's, only its cost: this program is a small fraction of
// lifeboat's size and starts without lifeboat's package initialisation
// (docs/postgres.md, "The hand-off to serve").
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat/internal/walsock"
)

func main() {
	args := os.Args[1:]
	call, ok := parseArgs(args)
	if !ok || os.Geteuid() == 0 {
		// root: lifeboat may switch to the policy's user first.
		execLifeboat(args)
	}
	req, socket, ok := fromPolicy(call)
	if !ok {
		execLifeboat(args)
	}
	rep, err := walsock.Push(context.Background(), socket, req, call.path)
	if errors.Is(err, walsock.ErrNoDaemon) || err == nil && rep.Mismatch {
		execLifeboat(args)
	}
	if err == nil && rep.Error != "" {
		err = fmt.Errorf("lifeboat serve: %s", rep.Error)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lifeboat: wal-push %s: %v\n", req.Name, err)
		os.Exit(1)
	}
	if call.verbose {
		fmt.Fprintf(os.Stderr, "level=INFO msg=archived asset=%s file=%s bytes=%d existed=%t by=serve\n", req.Asset, req.Name, rep.Bytes, rep.Existed)
	}
	if rep.Alternate != "" {
		fmt.Fprintf(os.Stderr, "level=WARN msg=\"the file's name in the repository is taken by an object that is not authentic (planted without the key?); archived under its alternate name, where wal-fetch finds it; run lifeboat verify\" asset=%s file=%s stored_as=%s\n",
			req.Asset, req.Name, rep.Alternate)
	}
}

// call is what "lifeboat -c POLICY [-v] wal-push ASSET PATH" asks for.
type call struct {
	policy, asset, path string
	verbose             bool
}

// parseArgs accepts only the plain form of a wal-push call; anything else
// goes to lifeboat.
func parseArgs(args []string) (call, bool) {
	var c call
	i := 0
	for ; i < len(args) && args[i] != "wal-push"; i++ {
		a := args[i]
		switch {
		case (a == "-c" || a == "--config") && i+1 < len(args):
			i++
			c.policy = args[i]
		case strings.HasPrefix(a, "--config="):
			c.policy = strings.TrimPrefix(a, "--config=")
		case a == "-v" || a == "--verbose":
			c.verbose = true
		default:
			return c, false
		}
	}
	if c.policy == "" || len(args) != i+3 || strings.HasPrefix(args[i+1], "-") || strings.HasPrefix(args[i+2], "-") {
		return c, false
	}
	c.asset, c.path = args[i+1], args[i+2]
	return c, true
}

// policyFile is the little of the policy a hand-off needs; the daemon
// checks the repository against its own policy.
type policyFile struct {
	StateDir     string `yaml:"state_dir"`
	Repositories []struct {
		Name string `yaml:"name"`
		URL  string `yaml:"url"`
	} `yaml:"repositories"`
	Assets []struct {
		Name         string   `yaml:"name"`
		Repositories []string `yaml:"repositories"`
	} `yaml:"assets"`
}

// fromPolicy reads the request and the socket from the policy, when the
// policy states them plainly: no ${NAME} to expand, an absolute
// state_dir, the asset's first repository named with its URL.
func fromPolicy(c call) (walsock.Request, string, bool) {
	data, err := os.ReadFile(c.policy)
	if err != nil {
		return walsock.Request{}, "", false
	}
	var p policyFile
	if err := yaml.Unmarshal(data, &p); err != nil {
		return walsock.Request{}, "", false
	}
	if !filepath.IsAbs(p.StateDir) || strings.Contains(p.StateDir, "$") {
		return walsock.Request{}, "", false
	}
	for _, a := range p.Assets {
		if a.Name != c.asset || len(a.Repositories) == 0 {
			continue
		}
		for _, r := range p.Repositories {
			if r.Name == a.Repositories[0] && r.URL != "" && !strings.Contains(r.URL, "$") {
				req := walsock.Request{Asset: c.asset, Name: filepath.Base(c.path), Repository: r.URL}
				return req, walsock.Path(p.StateDir), true
			}
		}
	}
	return walsock.Request{}, "", false
}

// execLifeboat replaces this process with lifeboat, the one next to this
// program or else on PATH, with the same arguments.
func execLifeboat(args []string) {
	bin := ""
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "lifeboat"); isExecutable(p) {
			bin = p
		}
	}
	if bin == "" {
		p, err := exec.LookPath("lifeboat")
		if err != nil {
			fmt.Fprintf(os.Stderr, "lifeboat-walpush: no lifeboat next to this program or on PATH to archive without lifeboat serve: %v\n", err)
			os.Exit(1)
		}
		bin = p
	}
	err := syscall.Exec(bin, append([]string{bin}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "lifeboat-walpush: run %s: %v\n", bin, err)
	os.Exit(1)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
