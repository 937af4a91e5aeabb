package app

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
)

// ErrNotThisPolicy means the daemon's policy does not archive the asset
// into the repository the caller's policy names: the caller archives by
// itself rather than have the file stored where its policy does not say.
var ErrNotThisPolicy = errors.New("the asset is not archived into that repository by this policy")

// ArchiveLog archives one log file of an asset whose kind hands its logs
// to a command (wal-push), for lifeboat serve: the primary repository
// comes from the service's pool, kept open (and a passphrase's key
// derived) across files. repositoryURL is the asset's primary repository
// in the caller's policy. As wal-push does, the file is queued for the
// copies and its push is audited.
func (s *Service) ArchiveLog(ctx context.Context, assetName, repositoryURL, name string, f *os.File) (asset.ArchivedLog, error) {
	a, k, err := s.Asset(assetName)
	if err != nil {
		return asset.ArchivedLog{}, fmt.Errorf("%w: %w", ErrNotThisPolicy, err)
	}
	la, ok := k.(asset.LogArchiver)
	if !ok {
		return asset.ArchivedLog{}, asset.Usagef("asset %s is of kind %s, which archives no log files; kinds that do: %s", a.Name, a.Kind,
			s.kindsWith(func(k asset.Kind) bool { _, ok := k.(asset.LogArchiver); return ok }))
	}
	rp, err := s.assetRepositoryPolicy(a, "")
	if err != nil {
		return asset.ArchivedLog{}, err
	}
	if rp.URL != repositoryURL {
		return asset.ArchivedLog{}, fmt.Errorf("asset %s: repository %s, not %s: %w", a.Name, rp.URL, repositoryURL, ErrNotThisPolicy)
	}
	queues, err := OpenCopyQueues(s.Policy, a)
	if err != nil {
		return asset.ArchivedLog{}, fmt.Errorf("wal-push: %w", err)
	}
	enqueue := EnqueueAll(queues)
	r, err := s.Repository(ctx, rp)
	if err != nil {
		err = fmt.Errorf("wal-push: %w", err)
	} else {
		var res asset.ArchivedLog
		res, err = la.ArchiveLog(ctx, r, a.Name, name, f, enqueue)
		if err == nil {
			AuditWALPush(ctx, s.Policy, a.Name, rp.Name, r, name, nil, s.Log, s.Now)
			return res, nil
		}
	}
	AuditWALPush(ctx, s.Policy, a.Name, rp.Name, r, name, err, s.Log, s.Now)
	return asset.ArchivedLog{}, err
}
