package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Config is a postgres asset's own part of the policy.
type Config struct {
	// PGData is the absolute path of the cluster's data directory.
	PGData string
	// DSN is the libpq connection string that reaches the server. It may
	// hold a password: pass it through policy.RedactDSN before printing.
	DSN string
	// BlockSize is the block size in bytes, or 0 for the repository's.
	BlockSize int
	// WAL is how WAL reaches the repository beyond archive_command.
	WAL WALConfig
}

// WALConfig is the policy's `wal:` mapping of a postgres asset.
type WALConfig struct {
	// Stream runs a WAL stream for the asset under lifeboat serve (and
	// lifeboat wal-stream): see docs/postgres.md, "Streaming WAL".
	Stream bool
	// FlushInterval bounds how long received WAL waits before the
	// segment in progress is stored as a partial.
	FlushInterval time.Duration
	// SlotMaxRetained is the retained WAL of the stream's slot past which
	// check alerts; 0 for the default.
	SlotMaxRetained int64
}

// Defaults of the wal: mapping.
const (
	DefaultFlushInterval   = time.Second
	DefaultSlotMaxRetained = 1 << 30
)

var _ asset.Configurer = kind{}

// ConfigKeys are the policy keys of a postgres asset beyond the shared ones.
func (kind) ConfigKeys() []string { return []string{"pgdata", "dsn", "block_size", "wal"} }

// DecodeConfig reads a postgres asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{PGData: s.AbsPath("pgdata"), DSN: s.String("dsn")}
	if c.PGData == "" {
		s.Errorf("pgdata", "pgdata is required for a postgres asset: the absolute path of the data directory")
	}
	if c.DSN == "" {
		s.Errorf("dsn", `dsn is required for a postgres asset, e.g. "host=/var/run/postgresql user=postgres dbname=postgres"`)
	}
	if v := s.String("block_size"); v != "" {
		n, err := parseBlockSize(v)
		switch {
		case err != nil:
			s.Errorf("block_size", "%v", err)
		case !slices.Contains(blockSizes(), n):
			s.Errorf("block_size", "block_size must be one of %s", blockSizeList())
		default:
			c.BlockSize = n
		}
	}
	c.WAL = decodeWAL(s)
	return c
}

// decodeWAL reads the wal: mapping.
func decodeWAL(s *policy.Section) WALConfig {
	w := WALConfig{FlushInterval: DefaultFlushInterval, SlotMaxRetained: DefaultSlotMaxRetained}
	sub := s.Sub("wal", "stream", "flush_interval", "slot_max_retained")
	if sub == nil {
		return w
	}
	w.Stream = sub.Bool("stream", false)
	if v := sub.String("flush_interval"); v != "" {
		d, err := policy.ParseDuration(v)
		switch {
		case err != nil:
			sub.Errorf("flush_interval", "%v", err)
		case d < 10*time.Millisecond || d > time.Hour:
			sub.Errorf("flush_interval", "flush_interval %s: want from 10ms to 1h", v)
		default:
			w.FlushInterval = d
		}
	}
	if v := sub.String("slot_max_retained"); v != "" {
		n, err := parseByteSize(v)
		if err != nil {
			sub.Errorf("slot_max_retained", "%v", err)
		} else {
			w.SlotMaxRetained = n
		}
	}
	return w
}

// parseByteSize reads a size written like "512MiB" or "2GiB".
func parseByteSize(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}} {
		if digits, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(digits, 10, 64)
			if err != nil || n <= 0 || n > 1<<20 || digits[0] == '+' {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("invalid size %q: write it like 512MiB or 2GiB", s)
}

// ConfigOf is the postgres configuration of an asset.
func ConfigOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil {
		return nil, asset.Usagef("asset %s: no postgres settings (pgdata, dsn) in the policy", a.Name)
	}
	return c, nil
}

// blockSizes are the accepted block sizes: powers of two from 8 KiB, the
// PostgreSQL page size, to 128 KiB.
func blockSizes() []int { return []int{8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10} }

func blockSizeList() string {
	sizes := blockSizes()
	s := make([]string, len(sizes))
	for i, b := range sizes {
		s[i] = fmt.Sprintf("%dKiB", b>>10)
	}
	return strings.Join(s, ", ")
}

// parseBlockSize reads a size written like "16KiB".
func parseBlockSize(s string) (int, error) {
	errBad := fmt.Errorf("invalid block_size %q: use one of %s", s, blockSizeList())
	digits, ok := strings.CutSuffix(s, "KiB")
	if !ok {
		return 0, errBad
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || n > 1<<20 || digits[0] == '+' {
		return 0, errBad
	}
	return n << 10, nil
}
