package pgdrill

import (
	"fmt"
	"log/slog"
	"os"
)

// Scratch is a Host for work that is not a drill but needs a throwaway
// server all the same (restoring some tables of a backup): a private
// directory and the teardown steps that Close runs.
type Scratch struct {
	dir     string
	runAs   string
	log     *slog.Logger
	cleanup []func()
}

// NewScratch makes a private work directory in base ("": the system's
// temporary directory). runAs is the OS user servers run as under root.
func NewScratch(base, runAs string, log *slog.Logger) (*Scratch, error) {
	if base == "" {
		base = os.TempDir()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp(base, "lifeboat-restore-")
	if err != nil {
		return nil, fmt.Errorf("make a work directory in %s: %w", base, err)
	}
	return &Scratch{dir: dir, runAs: runAs, log: log}, nil
}

func (s *Scratch) WorkDir() string   { return s.dir }
func (s *Scratch) RunAs() string     { return s.runAs }
func (s *Scratch) Cleanup(f func())  { s.cleanup = append(s.cleanup, f) }
func (s *Scratch) Log() *slog.Logger { return s.log }

// Close runs the teardown steps (stopping the servers) and removes the
// work directory, whatever happened before.
func (s *Scratch) Close() {
	for _, f := range s.cleanup {
		f()
	}
	s.cleanup = nil
	if err := os.RemoveAll(s.dir); err != nil {
		s.log.Warn("remove the throwaway work directory", "dir", s.dir, "err", err)
	}
}
