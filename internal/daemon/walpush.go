package daemon

import (
	"context"
	"os"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/walsock"
)

// WALPushFunc archives one WAL file that wal-push handed over the state
// directory's socket, under the policy in force, and answers only once
// the file is durable or the push failed.
type WALPushFunc func(ctx context.Context, p *policy.Policy, req walsock.Request, f *os.File) walsock.Reply

// serveWALSocket listens on the state directory's WAL socket and serves
// wal-push until ctx ends or the returned function is called, which stops
// it and waits.
// A socket that cannot be made is logged, not fatal: wal-push then
// archives by itself, as without a daemon.
func (d *Daemon) serveWALSocket(ctx context.Context) (wait func()) {
	if d.cfg.WALPush == nil {
		return func() {}
	}
	srv, err := walsock.Listen(walsock.Path(d.pol.StateDir), d.log)
	if err != nil {
		d.log.Error("WAL hand-off off; wal-push archives by itself", "error", errLine(err))
		return func() {}
	}
	d.log.Info("WAL hand-off listening", "socket", srv.Path())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, func(ctx context.Context, req walsock.Request, f *os.File) walsock.Reply {
			return d.cfg.WALPush(ctx, d.current.Load(), req, f)
		}, backgroundStopWait)
	}()
	return func() { cancel(); <-done }
}
