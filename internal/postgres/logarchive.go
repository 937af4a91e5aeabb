package postgres

import (
	"context"
	"os"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

var _ asset.LogArchiver = kind{}

// ArchiveLog is wal-push of a WAL file lifeboat serve received open.
func (kind) ArchiveLog(ctx context.Context, r *repo.Repository, assetName, name string, f *os.File, stored func(name string, data []byte) error) (asset.ArchivedLog, error) {
	res, err := PushWALFile(ctx, r, assetName, name, f, stored)
	return asset.ArchivedLog{Bytes: res.Bytes, Existed: res.Existed, Alternate: res.Alternate}, err
}
