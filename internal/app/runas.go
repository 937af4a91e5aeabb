package app

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// ErrWrongUser is returned (wrapped) when a command that writes a
// repository or state runs as another OS user than the one Lifeboat runs
// as on this host.
var ErrWrongUser = errors.New("wrong OS user")

// RunAs says whose files a command that writes a repository or state_dir
// must make: the policy's user, else the owner of state_dir. Objects and
// state made by anyone else (typically root, 0600) would be unreadable to
// the user whose archive_command and restores need them, and would fail
// that user's next run with "permission denied".
//
// It returns nil when this process is that user (or no one is named). Run
// by root with asOwner it returns the user to become; anyone else gets an
// error that names whom to run as.
func RunAs(p *policy.Policy, asOwner bool) (*user.User, error) {
	me := os.Geteuid()
	var want *user.User
	var why string
	if p.User != "" {
		u, err := user.Lookup(p.User)
		if err != nil {
			return nil, fmt.Errorf("%s: user %s: no such user on this host: %w", p.Source, p.User, ErrWrongUser)
		}
		want, why = u, fmt.Sprintf("the policy %s says Lifeboat runs as %s (user)", p.Source, p.User)
	}
	if uid, ok := ownerOf(p.StateDir); ok {
		owner := userByID(uid)
		switch {
		case want == nil && uid != me:
			want, why = owner, fmt.Sprintf("state_dir %s belongs to %s", p.StateDir, owner.Username)
		case want != nil && owner.Uid != want.Uid:
			return nil, fmt.Errorf("state_dir %s belongs to %s, but the policy %s says Lifeboat runs as %s: give it to %s (chown -R %s %s): %w",
				p.StateDir, owner.Username, p.Source, want.Username, want.Username, want.Username, p.StateDir, ErrWrongUser)
		}
	}
	if want == nil || want.Uid == strconv.Itoa(me) {
		return nil, nil
	}
	if asOwner && me == 0 {
		return want, nil
	}
	mine := userByID(me).Username
	if asOwner {
		return nil, fmt.Errorf("%s; --as-owner lets only root act on its behalf, and this runs as %s: %w", why, mine, ErrWrongUser)
	}
	return nil, fmt.Errorf("%s, but this runs as %s, whose files %s could not read: run as %s (runuser -u %s -- lifeboat ...), or as root with --as-owner: %w",
		why, mine, want.Username, want.Username, want.Username, ErrWrongUser)
}

// userByID is the user with this uid, or one named "uid N" when the
// system has no name for it.
func userByID(uid int) *user.User {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u
	}
	return &user.User{Uid: strconv.Itoa(uid), Gid: strconv.Itoa(uid), Username: "uid " + strconv.Itoa(uid)}
}

// Become makes this process u for the rest of its life (groups, gid, uid,
// and the HOME and USER its children see), so that everything it writes
// belongs to u. Only root can; Go applies it to every thread.
func Become(u *user.User) error {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("become %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("become %s: gid %q: %w", u.Username, u.Gid, err)
	}
	var groups []int
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil {
				groups = append(groups, g)
			}
		}
	}
	if len(groups) == 0 {
		groups = []int{gid}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("become %s: set groups: %w", u.Username, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("become %s: set gid: %w", u.Username, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("become %s: set uid: %w", u.Username, err)
	}
	for k, v := range map[string]string{"HOME": u.HomeDir, "USER": u.Username, "LOGNAME": u.Username} {
		if v != "" {
			os.Setenv(k, v)
		}
	}
	return nil
}
