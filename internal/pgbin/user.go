package pgbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/childenv"
)

// User is an unprivileged OS account that PostgreSQL programs run as when
// the caller is root: PostgreSQL refuses to run as root. A nil *User is
// the current user, and every method accepts it.
type User struct {
	Name     string
	UID, GID int
}

// RunAs picks the OS user a server runs as. As root it is the user named,
// else the owner of dataDir (when dataDir is not "" and not owned by root),
// else "postgres"; the user must exist and not be root. As anyone else it
// is nil, the current user: naming another is an error, since only root
// can switch.
func RunAs(name, dataDir string) (*User, error) {
	if os.Geteuid() != 0 {
		if name != "" {
			if u, err := user.Current(); err != nil || u.Username != name {
				return nil, fmt.Errorf("running PostgreSQL as %s needs root: run as %s, or as root", name, name)
			}
		}
		return nil, nil
	}
	if name == "" && dataDir != "" {
		if fi, err := os.Stat(dataDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
					name = u.Username
				}
			}
		}
	}
	if name == "" {
		name = "postgres"
	}
	u, err := LookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL runs as an unprivileged OS user and %w: create it or name another", err)
	}
	if u.UID == 0 {
		return nil, fmt.Errorf("%s is root, and PostgreSQL refuses to run as root: name an unprivileged user", name)
	}
	return u, nil
}

// LookupUser finds the OS user called name. /etc/passwd is read first:
// os/user may go through a name service cache that does not see a user
// another process added a moment ago.
func LookupUser(name string) (*User, error) {
	if u, ok := lookupPasswd(name); ok {
		return u, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q does not exist", name)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has non-numeric ids %s:%s", name, u.Uid, u.Gid)
	}
	return &User{Name: u.Username, UID: uid, GID: gid}, nil
}

func lookupPasswd(name string) (*User, bool) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[0] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return nil, false
		}
		return &User{Name: name, UID: uid, GID: gid}, true
	}
	return nil, false
}

// EnsureUser returns the OS user called name, creating it when missing as a
// system user with a group of its own, no login shell and home as its home
// directory (not created); comment describes it in /etc/passwd. Only root
// can create users. Processes running side by side (test binaries of
// several packages) may race to create it, so a failed useradd is retried
// while another process may hold the passwd lock or have just created the
// user.
func EnsureUser(ctx context.Context, name, home, comment string) (*User, error) {
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		useradd = "/usr/sbin/useradd"
	}
	var out []byte
	for attempt := 0; attempt < 40; attempt++ {
		if u, ok := lookupPasswd(name); ok {
			return u, nil
		}
		cmd := exec.CommandContext(ctx, useradd, "--system", "--user-group", "--no-create-home",
			"--home-dir", home, "--shell", "/usr/sbin/nologin", "--comment", comment, name)
		cmd.Env = childenv.Base()
		if out, err = cmd.CombinedOutput(); err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("create user %s: %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	if u, err := LookupUser(name); err == nil {
		return u, nil
	}
	return nil, fmt.Errorf("create user %s with useradd: %v: %s", name, err, strings.TrimSpace(string(out)))
}

// IDs are the owner a file made for u must get: u's, or -1 (keep) for the
// current user.
func (u *User) IDs() (uid, gid int) {
	if u == nil {
		return -1, -1
	}
	return u.UID, u.GID
}

// Chown gives paths to u; for the current user it does nothing.
func (u *User) Chown(paths ...string) error {
	if u == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			return fmt.Errorf("give %s to %s: %w", p, u.Name, err)
		}
	}
	return nil
}

// MkdirPrivate makes the directory p that u owns and nobody else can enter.
func (u *User) MkdirPrivate(p string) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	return u.Chown(p)
}

// Credential is what a process needs to run as u, with root's
// supplementary groups dropped; nil for the current user.
func (u *User) Credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
}

// Command builds a command that runs path as u, in an allow-listed
// environment (childenv.Base: PATH, HOME, locale, TZ; no PG* variable of
// the caller, whose PGHOST or PGDATA must not redirect it to another
// server, and none of the caller's secrets, which another OS user must
// not see), with messages in English (LC_ALL=C) and, for another user,
// that user's USER and LOGNAME and a HOME it can write (the temporary
// directory). Variables appended to its Env win over these.
func (u *User) Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	env := childenv.Base("LC_ALL=C")
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
		env = append(env, "HOME="+os.TempDir(), "USER="+u.Name, "LOGNAME="+u.Name)
	}
	cmd.Env = env
	// A server outlives pg_ctl, which must not be killed halfway through a
	// start or stop: a cancelled caller must still be able to stop it.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// errRoot is why a server cannot run as the current user.
var errRoot = errors.New("PostgreSQL refuses to run as root: give the server an unprivileged OS user (Server.OS)")
