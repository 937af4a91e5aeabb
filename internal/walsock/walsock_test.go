package walsock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// socketDir is a short directory: a unix socket's address holds 107 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func walFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "000000010000000000000003")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func serve(t *testing.T, path string, h Handler) (stop func()) {
	t.Helper()
	srv, err := Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, h, time.Second); close(done) }()
	return func() { cancel(); <-done }
}

// The handler reads the very file the client opened, and its answer comes
// back whole.
func TestPush(t *testing.T) {
	t.Parallel()
	sock := Path(socketDir(t))
	stop := serve(t, sock, func(_ context.Context, req Request, f *os.File) Reply {
		b, err := io.ReadAll(f)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		if req.Asset != "db" || req.Repository != "file:///r" || f.Name() != req.Name {
			return Reply{Error: "request garbled"}
		}
		return Reply{Bytes: len(b), Existed: string(b) == "again", Alternate: "alt"}
	})
	rep, err := Push(context.Background(), sock, Request{Asset: "db", Name: "000000010000000000000003", Repository: "file:///r"}, walFile(t, "again"))
	if err != nil || rep.Error != "" || rep.Bytes != 5 || !rep.Existed || rep.Alternate != "alt" {
		t.Fatalf("push: %+v %v", rep, err)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after Serve: %v", err)
	}
	// No daemon: nothing handed over, and the caller is told so.
	if _, err := Push(context.Background(), sock, Request{Name: "x"}, walFile(t, "x")); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("push without a daemon: %v", err)
	}
}

// A socket left by a daemon that died is replaced by the next one, and a
// client meanwhile finds no daemon; anything but a socket is left alone.
func TestStaleSocket(t *testing.T) {
	t.Parallel()
	dir := socketDir(t)
	sock := Path(dir)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: a killed daemon's
	if _, err := Push(context.Background(), sock, Request{Name: "x"}, walFile(t, "x")); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("push to a stale socket: %v", err)
	}
	stop := serve(t, sock, func(context.Context, Request, *os.File) Reply { return Reply{Bytes: 1} })
	if rep, err := Push(context.Background(), sock, Request{Name: "x"}, walFile(t, "x")); err != nil || rep.Bytes != 1 {
		t.Fatalf("push after the stale socket was replaced: %+v %v", rep, err)
	}
	stop()

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(plain, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "in the way") {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("the regular file was removed")
	}
}

// A daemon that goes away after taking the request never passes for a
// success: the client gets an error that is not ErrNoDaemon.
func TestDaemonGoneMidPush(t *testing.T) {
	t.Parallel()
	sock := Path(socketDir(t))
	got := make(chan struct{})
	srv, err := Listen(sock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := srv.ln.AcceptUnix()
		if err != nil {
			return
		}
		buf := make([]byte, 4096)
		c.Read(buf)
		close(got)
		c.Close() // dies before answering
		srv.ln.Close()
	}()
	_, err = Push(context.Background(), sock, Request{Name: "x"}, walFile(t, "x"))
	<-got
	if err == nil || errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("push to a daemon that died: %v", err)
	}
}

// A handler still working when the daemon stops gets its context
// cancelled after the drain bound, and its client an answer (the
// handler's failure) rather than a hang.
func TestServeStopsWithPushUnderWay(t *testing.T) {
	t.Parallel()
	sock := Path(socketDir(t))
	srv, err := Listen(sock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		srv.Serve(ctx, func(ctx context.Context, _ Request, _ *os.File) Reply {
			close(started)
			<-ctx.Done()
			return Reply{Error: ctx.Err().Error()}
		}, 10*time.Millisecond)
		close(done)
	}()
	go func() { <-started; cancel() }()
	rep, err := Push(context.Background(), sock, Request{Name: "x"}, walFile(t, "x"))
	<-done
	if err != nil || rep.Error == "" {
		t.Fatalf("push cut by a stop: %+v %v", rep, err)
	}
}
