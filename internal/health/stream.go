package health

import (
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// CheckWALSlot judges the replication slot of a streamed asset.
const CheckWALSlot = "wal_slot"

// SlotFacts are what the source says of a streamed asset's slot.
type SlotFacts struct {
	Slot          string
	Exists        bool
	Active        bool
	WALStatus     string
	RetainedBytes int64
	SafeBytes     *int64
	MaxRetained   int64
	Error         string
}

// keepSizeGuidance is the advice every slot alert ends with.
const keepSizeGuidance = "set max_slot_wal_keep_size on the server to bound what a slot may hold (past it the slot loses WAL and the stream a stretch of the archive, which archive_command can still cover, instead of the primary its disk)"

// walSlot: a stream's slot holds WAL in the primary's pg_wal until the
// stream has it in the repository. A stream that is down or behind makes
// that grow without end unless max_slot_wal_keep_size bounds it; check
// alerts before the disk fills or the slot loses WAL.
func walSlot(a *policy.Asset, s *SlotFacts) Result {
	r := Result{Asset: a.Name, Check: CheckWALSlot}
	if s.Error != "" {
		r.Message = fmt.Sprintf("slot %s: state unknown: %s", s.Slot, s.Error)
		return r
	}
	if !s.Exists {
		r.Message = fmt.Sprintf("replication slot %s does not exist: the WAL stream creates it when it starts (is lifeboat serve running?)", s.Slot)
		return r
	}
	v := float64(s.RetainedBytes)
	r.Value = &v
	conn := "connected"
	if !s.Active {
		conn = "no stream connected"
	}
	switch {
	case s.WALStatus == "lost":
		r.Message = fmt.Sprintf("slot %s has lost WAL the stream had not received (wal_status lost): the archive has a gap unless archive_command covered it; drop the slot (pg_drop_replication_slot('%s')) so the stream starts anew, and take a backup", s.Slot, s.Slot)
	case s.WALStatus == "unreserved":
		r.Message = fmt.Sprintf("slot %s is about to lose WAL (wal_status unreserved, %s): the stream is down or behind; %s", s.Slot, conn, keepSizeGuidance)
	case s.MaxRetained > 0 && s.RetainedBytes > s.MaxRetained:
		r.Message = fmt.Sprintf("slot %s holds %s of WAL in pg_wal, more than slot_max_retained %s (%s): the stream is down or behind and the primary's disk fills; %s",
			s.Slot, bytes(s.RetainedBytes), bytes(s.MaxRetained), conn, keepSizeGuidance)
	case s.SafeBytes != nil && s.MaxRetained > 0 && *s.SafeBytes < s.MaxRetained/4:
		r.Message = fmt.Sprintf("slot %s can take only %s more WAL before max_slot_wal_keep_size makes it lose some (%s)", s.Slot, bytes(max(*s.SafeBytes, 0)), conn)
	default:
		r.OK = true
		r.Message = fmt.Sprintf("slot %s holds %s of WAL (threshold %s, %s)", s.Slot, bytes(s.RetainedBytes), bytes(s.MaxRetained), conn)
		if s.SafeBytes == nil {
			r.Message += "; max_slot_wal_keep_size is unlimited: a stream down for long fills pg_wal"
		}
	}
	return r
}

func bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
