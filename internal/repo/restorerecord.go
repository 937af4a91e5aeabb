package repo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// RestoreRecordName is the file a restore with RestoreOptions.Record
// leaves at the top of its directory: which snapshot it wrote, and the
// inode, size and times each file had when the restore finished with it.
// A later delta restore into the directory trusts a file to hold what the
// record says only while all of these are unchanged; the change time,
// which no one short of root can set back, moves on any write. Sealed
// with the repository's key, so it cannot be forged without it; anything
// wrong with it only costs the delta restore its shortcut.
const RestoreRecordName = "lifeboat.restored"

const recordAAD = "restore-record"

// maxRecordSize bounds what is read of a record: a directory of a million
// files makes one of about 150 MiB.
const maxRecordSize = 512 << 20

type restoreRecord struct {
	Trees []ID                    `json:"trees"`
	Files map[string]recordedFile `json:"files"`
}

type recordedFile struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime"`
	CTime  int64  `json:"ctime"`
	Blocks ID     `json:"blocks"` // blockListID of what the restore wrote
}

func recordStat(st *unix.Stat_t) recordedFile {
	return recordedFile{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano()}
}

// sameFile says whether st is the file the record describes, untouched.
func (f recordedFile) sameFile(st *unix.Stat_t) bool {
	g := recordStat(st)
	g.Blocks = f.Blocks
	return g == f
}

// blockListID is the keyed hash of a file's block list: equal lists, equal
// content.
func (c *crypter) blockListID(blocks []Block) ID {
	b := make([]byte, 0, len(blocks)*(c.idLen+4))
	for _, bl := range blocks {
		b = binary.LittleEndian.AppendUint32(append(b, bl.ID[:c.idLen]...), bl.Len)
	}
	return c.mac(b)
}

// readRecord reads the record a restore left in the directory; nil when
// there is none or it does not open.
func (rs *treeRestore) readRecord() *restoreRecord {
	fd, err := rs.root.open(RestoreRecordName, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), RestoreRecordName)
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize))
	if err == nil {
		data, err = rs.r.crypt.openObject(recordAAD, data)
	}
	var rec restoreRecord
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil {
		rs.r.log.Warn("delta: the record of the last restore into the directory is not used", "dir", rs.root.path, "err", err)
		return nil
	}
	return &rec
}

// writeRecord leaves the record of this restore in its directory,
// replacing the one before, once every file is finished.
func (rs *treeRestore) writeRecord(treeIDs []ID) error {
	rec := restoreRecord{Trees: treeIDs, Files: make(map[string]recordedFile, len(rs.files))}
	var owner *unix.Stat_t
	for _, f := range rs.files {
		if owner == nil {
			owner = f.final
		}
		// A file restored as zeros does not hold its blocks.
		if f.final == nil || rs.zero(f.node.Path) {
			continue
		}
		rf := recordStat(f.final)
		rf.Blocks = rs.r.crypt.blockListID(f.node.Blocks)
		rec.Files[f.node.Path] = rf
	}
	payload, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	sealed := rs.r.crypt.sealObject(recordAAD, payload)
	dir := int(rs.root.f.Fd())
	tmp := RestoreRecordName + ".tmp"
	if err := unix.Unlinkat(dir, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("record the restore: %w", err)
	}
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	if _, err := f.Write(sealed); err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	// The owner the restore gave the files, so that the tools of the user
	// the directory is restored for can read all of it.
	if os.Geteuid() == 0 && owner != nil {
		if err := f.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			return fmt.Errorf("record the restore: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	if err := unix.Renameat(dir, tmp, dir, RestoreRecordName); err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	return nil
}

// recordedBlocks reads, from the snapshot the record names, the block
// lists of the files in want, each checked against the record; a file
// whose list cannot be read is left out.
func (rs *treeRestore) recordedBlocks(ctx context.Context, idx *Index, rec *restoreRecord, want map[string]ID) map[string][]Block {
	out := make(map[string][]Block, len(want))
	err := rs.r.WalkTree(ctx, idx, rec.Trees, func(n *Node) error {
		if id, ok := want[n.Path]; ok && n.Type == NodeFile && rs.r.crypt.blockListID(n.Blocks) == id {
			out[n.Path] = n.Blocks
		}
		return nil
	})
	if err != nil {
		// Expired, most likely: those files are compared block by block.
		rs.r.log.Debug("delta: the snapshot of the last restore is not readable", "err", err)
		return nil
	}
	return out
}

// keptBlocks marks the blocks of the new list that the old list, which
// the file holds, already has at the same offset.
func keptBlocks(old, blocks []Block) []bool {
	keep := make([]bool, len(blocks))
	for i := range blocks {
		if i >= len(old) {
			break
		}
		if old[i].Len != blocks[i].Len {
			break // every later offset differs
		}
		keep[i] = old[i].ID == blocks[i].ID
	}
	return keep
}

func (rec *restoreRecord) file(p string) (recordedFile, bool) {
	if rec == nil {
		return recordedFile{}, false
	}
	f, ok := rec.Files[p]
	return f, ok
}
