package app

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// Drills lists the drill reports the catalog holds for the asset (""
// for every asset), newest first, at most limit (0: all). It creates no
// catalog where nothing ran. The dashboard shows these, the same
// documents check judges and the report tabulates.
func (s *Service) Drills(ctx context.Context, assetName string, limit int) ([]*evidence.DrillReport, error) {
	var drills []*evidence.DrillReport
	err := s.readCatalog(ctx, func(c *catalog.Catalog) (err error) {
		drills, err = c.Drills(ctx, catalog.DrillFilter{Asset: assetName, Limit: limit})
		return err
	})
	return drills, err
}
