package treestore

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Index is what the session may reuse: every blob of the repository
// except those of packs an expire condemned. A kind reads its parent
// snapshot through it, so that it decides on reuse with the same view
// the session stores with.
func (s *Session) Index() *repo.Index { return s.view.Index }

// AddStored records a file node whose content is already stored: its
// blocks are those of an earlier snapshot, reused without reading the
// source again (an object unchanged since the last backup). Nodes come in
// path order, as for Add. It returns false, recording nothing, when a
// block is not in the session's view (expire condemned or swept its
// pack): the caller must then read the content and Add it.
//
// n.Size must be the sum of the block lengths; CommitSnapshot later checks
// that no expire running meanwhile condemned the blocks.
func (s *Session) AddStored(ctx context.Context, n *repo.Node) (bool, error) {
	if n.Type != repo.NodeFile {
		return false, fmt.Errorf("%s: only a file has stored content", n.Path)
	}
	var sum int64
	for _, b := range n.Blocks {
		if !s.view.Index.Has(b.ID) {
			return false, nil
		}
		sum += int64(b.Len)
	}
	if sum != n.Size {
		return false, fmt.Errorf("%s: blocks hold %d bytes, size is %d: %w", n.Path, sum, n.Size, repo.ErrCorrupt)
	}
	if err := s.tw.Add(ctx, n); err != nil {
		return false, err
	}
	s.stats.Files++
	s.stats.BytesTotal += n.Size
	return true, nil
}
