package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownTimeout bounds how long Serve waits for scrapes in flight once
// its context ends; a scrape takes milliseconds, so anything still open
// after this is a stuck client and is cut off.
const shutdownTimeout = 3 * time.Second

// Server is a metrics endpoint that is listening but not yet serving. The
// daemon listens before it starts anything else, so that a taken port
// stops it at once with a clear message instead of failing in the
// background.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen opens addr (host:port) for h, served at /metrics, and a plain
// "ok" at /healthz for load balancers and systemd-style probes.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w (is another program, or another lifeboat serve, using it? change metrics.listen in the policy)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return &Server{
		ln: ln,
		srv: &http.Server{
			Handler: mux,
			// Bounds keep a slow or idle client from holding a
			// connection of the daemon forever.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		log: log,
	}, nil
}

// Addr is the address the server listens on (with the port the system
// chose, when addr asked for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then shuts down within shutdownTimeout and
// returns nil. An error means the server stopped on its own.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("serving metrics", "addr", s.ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		// Scrapes still running after the bound are cut off: the
		// daemon is stopping and must not wait on a scraper.
		s.log.Warn("metrics: closing connections still open at shutdown", "err", err)
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Serve listens on addr and serves h at /metrics (and "ok" at /healthz)
// until ctx ends, then shuts down within a few seconds. A listen error,
// such as an address in use, is returned at once.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	s, err := Listen(addr, h, log)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}
