package audit

import (
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
)

var processActor = sync.OnceValue(func() Actor {
	a := PushActor()
	a.User = UserName(a.UID)
	return a
})

// PushActor is the uid and host of this process without its user name,
// whose lookup (NSS, with cgo) costs a WAL push more than the rest of its
// audit: the name is looked up when the push's minute is recorded.
func PushActor() Actor {
	a := Actor{UID: os.Getuid()}
	a.Host, _ = os.Hostname()
	return a
}

// UserName is the name of the account uid; without a passwd entry (a
// container's arbitrary uid), $USER when this process runs as uid, else
// "": the uid beside it is what counts.
func UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	if uid == os.Getuid() {
		return os.Getenv("USER")
	}
	return ""
}

// ProcessActor is the account and host this process runs as (looked up
// once).
func ProcessActor() Actor {
	a := processActor()
	a.Keys = nil
	return a
}

// SourceFromEnv is the SSH client of the session a command runs in, from
// SSH_CONNECTION ("client port server port") or SSH_CLIENT ("client port
// server-port"), as host:port; empty outside an SSH session.
func SourceFromEnv(getenv func(string) string) Source {
	for _, v := range []string{"SSH_CONNECTION", "SSH_CLIENT"} {
		f := strings.Fields(getenv(v))
		if len(f) >= 2 {
			return Source{SSH: net.JoinHostPort(f[0], f[1])}
		}
	}
	return Source{}
}
