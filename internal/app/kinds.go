package app

import (
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/bucket"
	"github.com/lifeboat-dr/lifeboat/internal/files"
	"github.com/lifeboat-dr/lifeboat/internal/gitrepo"
	"github.com/lifeboat-dr/lifeboat/internal/pgdump"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/sqlite"
)

// Kinds is the registry of every kind of asset Lifeboat protects. A new
// kind is one package implementing asset.Kind and one line here.
func Kinds() *asset.Registry {
	return asset.NewRegistry(
		postgres.NewKind(),
		pgdump.NewKind(),
		sqlite.NewKind(),
		files.NewKind(),
		gitrepo.NewKind(),
		bucket.NewKind(),
	)
}
