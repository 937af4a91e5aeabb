package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/walstream"
)

var _ asset.Streamer = kind{}

// streamRetry is how long a broken stream waits before reconnecting.
const streamRetry = 2 * time.Second

func (kind) Streams(a *policy.Asset) bool {
	cfg, err := ConfigOf(a)
	return err == nil && cfg.WAL.Stream
}

func (kind) Stream(ctx context.Context, s *asset.Stream) error {
	cfg, err := ConfigOf(s.Asset)
	if err != nil {
		return err
	}
	return walstream.Run(ctx, StreamConfig(StreamOptions{
		Repo: s.Repo, Asset: s.Asset.Name, DSN: cfg.DSN, SpoolDir: s.StateDir,
		FlushInterval: cfg.WAL.FlushInterval, Log: s.Log, Stored: s.Stored,
	}), streamRetry)
}

func (kind) StreamState(ctx context.Context, a *policy.Asset) *asset.StreamState {
	st := &asset.StreamState{Slot: walstream.SlotName(a.Name)}
	cfg, err := ConfigOf(a)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.MaxRetained = cfg.WAL.SlotMaxRetained
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := readSlot(cctx, cfg.DSN, st); err != nil {
		st.Error = oneLine(err)
	}
	return st
}

// readSlot fills st from the server's pg_replication_slots.
func readSlot(ctx context.Context, dsn string, st *asset.StreamState) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, querySlot, st.Slot).Scan(&st.Active, &st.WALStatus, &st.RetainedBytes, &st.SafeBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	st.Exists = true
	return nil
}
