// Package walsock is the local socket over which lifeboat wal-push hands a
// WAL file to a running lifeboat serve, which keeps the repository open and
// its key derived, so a segment costs neither a repository opening nor a
// key derivation.
//
// The protocol is one request and one answer on a SOCK_SEQPACKET unix
// socket (message boundaries kept, so neither side parses a stream): the
// request is a JSON Request with the WAL file's open descriptor attached
// (SCM_RIGHTS), so the daemon reads exactly the file the archiver named,
// with the client's right to read it and no path to resolve again; the
// answer is a JSON Reply sent only once the daemon has finished with the
// file. A connection that ends without an answer is a failure, never a
// success: the client exits non-zero and PostgreSQL retries.
//
// The daemon accepts only peers running as its own user or as root
// (SO_PEERCRED), and the socket is mode 0600 in the state directory. A
// client the daemon will not serve (or that may not reach the socket)
// archives by itself, exactly as without a daemon: a daemon set up for
// another user never makes archiving fail.
package walsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// SocketName is the socket's name in the state directory.
const SocketName = "wal-push.sock"

// Path is the socket of the daemon whose state directory is stateDir.
func Path(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// maxPath is what a unix socket address holds (sun_path, 108 bytes with
// its terminating NUL).
const maxPath = 107

// maxMessage bounds a request or an answer; genuine ones are a few hundred
// bytes.
const maxMessage = 64 << 10

// AnswerTimeout bounds how long a client waits for the daemon's answer: a
// push that takes longer is reported as failed (PostgreSQL retries), so a
// wedged daemon cannot stall archiving for good.
var AnswerTimeout = 10 * time.Minute

// ErrNoDaemon means no daemon listens on the socket (none, or a stale
// socket left by one that died): the caller does the work itself. It is
// returned only when nothing was handed over.
var ErrNoDaemon = errors.New("no lifeboat serve listens on the WAL socket")

// Request is what wal-push asks for.
type Request struct {
	// Asset is the asset to archive into, Name the WAL file's name
	// (archive_command's %f).
	Asset string `json:"asset"`
	Name  string `json:"name"`
	// Repository is the URL of the asset's primary repository in the
	// client's policy: a daemon whose policy stores the asset elsewhere
	// answers Mismatch rather than archive it there.
	Repository string `json:"repository"`
}

// Reply is the daemon's answer.
type Reply struct {
	// Error is empty when the file is durably archived.
	Error string `json:"error,omitempty"`
	// Mismatch: the daemon's policy does not have the asset with that
	// repository; nothing was done, and the client archives by itself.
	Mismatch bool `json:"mismatch,omitempty"`
	// What was done, as postgres.PushResult says it.
	Bytes     int    `json:"bytes,omitempty"`
	Existed   bool   `json:"existed,omitempty"`
	Alternate string `json:"alternate,omitempty"`
}

// Handler archives one WAL file for a request. f is the file the client
// opened (read it from offset 0 with ReadAt or from its start); the
// handler must not keep it after returning.
type Handler func(ctx context.Context, req Request, f *os.File) Reply

// Server is a listening socket.
type Server struct {
	ln   *net.UnixListener
	path string
	uid  int
	log  *slog.Logger
}

// Listen makes the socket at path, replacing a stale one (the caller holds
// the state directory's lock, so no live daemon owns it). Anything else
// than a socket at path is left alone and refused.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if len(path) > maxPath {
		return nil, fmt.Errorf("WAL socket %s: longer than the %d bytes a unix socket address holds", path, maxPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("WAL socket %s: a %v is in the way", path, fi.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("WAL socket %s: remove the stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("WAL socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	// Peers are checked one by one too; the mode keeps others from even
	// connecting.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("WAL socket %s: %w", path, err)
	}
	return &Server{ln: ln, path: path, uid: os.Geteuid(), log: log}, nil
}

// Path is where the server listens.
func (s *Server) Path() string { return s.path }

// Serve answers requests with h until ctx ends, then stops accepting,
// lets the pushes under way finish for up to drain, cancels those still
// going (their clients get an error), and removes the socket.
func (s *Server) Serve(ctx context.Context, h Handler, drain time.Duration) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("WAL socket: accept failed; wal-push archives by itself until serve restarts", "error", err)
			}
			break
		}
		wg.Go(func() {
			defer c.Close()
			s.serveConn(work, c, h)
		})
	}
	s.ln.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		cancel()
		<-done
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	uid, err := peerUID(c)
	if err != nil {
		s.log.Warn("WAL socket: peer credentials unreadable; connection refused", "error", err)
		return
	}
	if uid != s.uid && uid != 0 {
		// Taken for a daemon of another set-up: the client archives by
		// itself, with whatever its own rights allow, as without a daemon.
		s.log.Warn("WAL socket: connection from another user refused", "uid", uid)
		reply(c, Reply{Mismatch: true})
		return
	}
	buf := make([]byte, maxMessage)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		s.log.Warn("WAL socket: request unreadable", "error", err)
		return
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		reply(c, Reply{Error: "WAL socket: " + err.Error()})
		return
	}
	var req Request
	jerr := json.Unmarshal(buf[:n], &req)
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), req.Name)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if jerr != nil {
		reply(c, Reply{Error: fmt.Sprintf("WAL socket: request: %v", jerr)})
		return
	}
	if len(files) != 1 {
		reply(c, Reply{Error: fmt.Sprintf("WAL socket: request with %d files, want 1", len(files))})
		return
	}
	if err := reply(c, h(ctx, req, files[0])); err != nil {
		// The client sees the connection end without an answer and
		// fails; PostgreSQL retries, and a retry of a stored file is 0.
		s.log.Warn("WAL socket: answer not delivered", "file", req.Name, "error", err)
	}
}

func reply(c *net.UnixConn, r Reply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

// peerUID is the user the connected process runs as.
func peerUID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

// parseRights returns the descriptors a message carried; those of a
// malformed message are closed.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_RIGHTS {
			continue
		}
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			return nil, fmt.Errorf("descriptors: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// Push hands the WAL file at path to the daemon listening at socket and
// waits for its answer. It returns ErrNoDaemon (and has handed nothing
// over) when no daemon listens; any failure after the request went out is
// an error the caller must report as a failed push.
func Push(ctx context.Context, socket string, req Request, path string) (Reply, error) {
	if len(socket) > maxPath {
		return Reply{}, fmt.Errorf("%s: path too long for a unix socket: %w", socket, ErrNoDaemon)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", socket)
	if err != nil {
		// A socket this user may not use (a daemon running as another
		// user) is no daemon for it either: it archives by itself, as it
		// would without one.
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
			errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTDIR) {
			return Reply{}, fmt.Errorf("%s: %w", socket, ErrNoDaemon)
		}
		return Reply{}, fmt.Errorf("WAL socket %s: %w", socket, err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	f, err := os.Open(path)
	if err != nil {
		return Reply{}, err
	}
	defer f.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return Reply{}, err
	}
	if _, _, err := c.WriteMsgUnix(body, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return Reply{}, fmt.Errorf("WAL socket %s: send: %w", socket, err)
	}
	deadline := time.Now().Add(AnswerTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetReadDeadline(deadline)
	buf := make([]byte, maxMessage)
	n, err := c.Read(buf)
	if err == nil && n == 0 {
		err = errors.New("connection closed")
	}
	if err != nil {
		return Reply{}, fmt.Errorf("lifeboat serve gave no answer for %s (the file may or may not be archived; the retry tells): %w", req.Name, err)
	}
	var r Reply
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return Reply{}, fmt.Errorf("lifeboat serve's answer for %s: %w", req.Name, err)
	}
	return r, nil
}
