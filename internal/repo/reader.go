package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// openFrame authenticates and decompresses one sealed frame.
func (r *Repository) openFrame(sealed []byte, fl FrameLoc) ([]byte, error) {
	return r.openFrameInto(nil, append([]byte(nil), sealed...), fl)
}

// openFrameInto is openFrame for callers that own sealed, which is
// decrypted in place, and that reuse dst for the decompressed frame.
func (r *Repository) openFrameInto(dst, sealed []byte, fl FrameLoc) ([]byte, error) {
	var plain []byte
	var err error
	if fl.Flags&frameFlagSealed != 0 {
		plain, err = r.openSealedFrame(sealed)
	} else {
		ns := r.crypt.aead.NonceSize()
		if len(sealed) < ns+r.crypt.aead.Overhead() {
			return nil, fmt.Errorf("pack %s frame at %d: sealed data too short: %w", fl.Pack.Short(), fl.Offset, ErrCorrupt)
		}
		plain, err = r.crypt.open(sealed[ns:ns], sealed, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("pack %s frame at %d: %w", fl.Pack.Short(), fl.Offset, err)
	}
	if fl.Flags&frameFlagZstd != 0 {
		if cap(dst) < int(fl.RawLen) {
			dst = make([]byte, 0, fl.RawLen)
		}
		plain, err = r.crypt.decoder().DecodeAll(plain, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("pack %s frame at %d: decompress: %v: %w", fl.Pack.Short(), fl.Offset, err, ErrCorrupt)
		}
	}
	if uint32(len(plain)) != fl.RawLen {
		return nil, fmt.Errorf("pack %s frame at %d: %d bytes, index says %d: %w", fl.Pack.Short(), fl.Offset, len(plain), fl.RawLen, ErrCorrupt)
	}
	return plain, nil
}

// ReadFrame fetches and opens one frame. A pack overwritten in place is
// read from its authentic earlier version (versions.go).
func (r *Repository) ReadFrame(ctx context.Context, fl FrameLoc) ([]byte, error) {
	out, err := r.readFrame(ctx, fl)
	if err != nil && r.recoverPack(ctx, fl.Pack, err) {
		return r.readFrame(ctx, fl)
	}
	return out, err
}

func (r *Repository) readFrame(ctx context.Context, fl FrameLoc) ([]byte, error) {
	sealed := make([]byte, fl.Sealed)
	for attempt := 0; ; attempt++ {
		if err := r.readRange(ctx, fl.Pack, fl.Offset, sealed); err != nil {
			return nil, err
		}
		out, err := r.openFrame(sealed, fl)
		if err == nil || !damaged(err) || attempt > 0 {
			return out, err
		}
		r.damagedInTransit(packName(fl.Pack), err)
	}
}

// readRange fills buf from the pack at offset.
func (r *Repository) readRange(ctx context.Context, pack ID, offset int64, buf []byte) error {
	rc, err := r.reads().GetRange(ctx, packName(pack), offset, int64(len(buf)))
	if err != nil {
		return fmt.Errorf("read pack %s: %w", pack.Short(), err)
	}
	_, err = io.ReadFull(rc, buf)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read pack %s: %w", pack.Short(), err)
	}
	return nil
}

// checkBlob verifies that a blob's content hashes to its ID.
func (r *Repository) checkBlob(id ID, data []byte) error {
	if r.crypt.blobID(data) != id {
		return fmt.Errorf("blob %s: content does not match its id: %w", id.Short(), ErrCorrupt)
	}
	return nil
}

// LoadBlob reads one blob through idx and checks its hash. A blob stored
// in more than one place is read from the next place when one fails (its
// pack is gone, or the frame or blob fails its check); the first failure
// is returned when all do.
func (r *Repository) LoadBlob(ctx context.Context, idx *Index, id ID) ([]byte, error) {
	locs := idx.Locations(id)
	if len(locs) == 0 {
		return nil, fmt.Errorf("blob %s is not in the index: %w", id.Short(), ErrMissing)
	}
	var first error
	for i, l := range locs {
		data, err := r.loadBlobAt(ctx, id, l)
		if err == nil {
			if i > 0 {
				r.log.Warn("read a blob from another place after the first failed", "blob", id.Short(), "err", first)
			}
			return data, nil
		}
		if first == nil {
			first = err
		}
		if !damaged(err) && !errors.Is(err, storage.ErrNotFound) {
			break
		}
	}
	return nil, first
}

// loadBlobAt reads one blob from one place and checks its hash.
func (r *Repository) loadBlobAt(ctx context.Context, id ID, l Location) ([]byte, error) {
	bl := l.Blob
	frame, err := r.ReadFrame(ctx, l.Frame)
	if err != nil {
		return nil, err
	}
	if uint64(bl.Offset)+uint64(bl.Len) > uint64(len(frame)) {
		return nil, fmt.Errorf("blob %s: outside its frame: %w", id.Short(), ErrCorrupt)
	}
	data := frame[bl.Offset : bl.Offset+bl.Len]
	if err := r.checkBlob(id, data); err != nil {
		return nil, err
	}
	return data, nil
}

// PackContents is what a pack's own header says it holds.
type PackContents struct {
	ID     ID
	Size   int64
	Frames []FrameLoc
	Blobs  [][]blobEntry // per frame
}

// ReadPackHeader reads and opens the header at the end of a pack; verify
// uses it to check the index against the packs.
func (r *Repository) ReadPackHeader(ctx context.Context, id ID) (*PackContents, error) {
	pc, err := r.readPackHeader(ctx, id)
	if err != nil && r.recoverPack(ctx, id, err) {
		return r.readPackHeader(ctx, id)
	}
	return pc, err
}

func (r *Repository) readPackHeader(ctx context.Context, id ID) (*PackContents, error) {
	name := packName(id)
	st, err := r.reads().Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if st.Size < 4 {
		return nil, fmt.Errorf("pack %s: %d bytes: %w", id.Short(), st.Size, ErrCorrupt)
	}
	rc, err := r.reads().GetRange(ctx, name, st.Size-4, 4)
	if err != nil {
		return nil, err
	}
	var l [4]byte
	_, err = io.ReadFull(rc, l[:])
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	hl := int64(binary.LittleEndian.Uint32(l[:]))
	if hl > st.Size-4 || hl > r.maxPackSize() {
		return nil, fmt.Errorf("pack %s: header length %d exceeds pack: %w", id.Short(), hl, ErrCorrupt)
	}
	rc, err = r.reads().GetRange(ctx, name, st.Size-4-hl, hl)
	if err != nil {
		return nil, err
	}
	sealed, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	plain, err := r.crypt.open(nil, sealed, []byte("pack header"))
	if err != nil {
		return nil, fmt.Errorf("pack %s header: %w", id.Short(), err)
	}
	frames, err := decodePackHeader(plain, r.crypt.idLen)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	pc := &PackContents{ID: id, Size: st.Size}
	var off int64
	for _, f := range frames {
		pc.Frames = append(pc.Frames, FrameLoc{Pack: id, Offset: off, Sealed: f.SealedLen, RawLen: f.RawLen, Flags: f.Flags})
		pc.Blobs = append(pc.Blobs, f.Blobs)
		off += int64(f.SealedLen)
	}
	if off+hl+4 != st.Size {
		return nil, fmt.Errorf("pack %s: frames and header cover %d of %d bytes: %w", id.Short(), off+hl+4, st.Size, ErrCorrupt)
	}
	return pc, nil
}

// ReadPackVerified reads a whole pack, checks its hash against its name,
// and opens every frame, checking every blob.
func (r *Repository) ReadPackVerified(ctx context.Context, id ID) (blobs int, err error) {
	data, err := readCapped(ctx, r.reads(), packName(id), r.maxPackSize())
	if err == nil && hashObject(data) != id {
		err = fmt.Errorf("pack %s: content does not match its name: %w", id.Short(), ErrCorrupt)
	}
	if err != nil && r.recoverPack(ctx, id, err) {
		data, err = readCapped(ctx, r.reads(), packName(id), r.maxPackSize())
		if err == nil && hashObject(data) != id {
			err = fmt.Errorf("pack %s: content does not match its name: %w", id.Short(), ErrCorrupt)
		}
	}
	if err != nil {
		return 0, err
	}
	pc, err := r.ReadPackHeader(ctx, id)
	if err != nil {
		return 0, err
	}
	for i, fl := range pc.Frames {
		frame, err := r.openFrame(data[fl.Offset:fl.Offset+int64(fl.Sealed)], fl)
		if err != nil {
			return blobs, err
		}
		var off uint32
		for _, b := range pc.Blobs[i] {
			if err := r.checkBlob(b.ID, frame[off:off+b.Len]); err != nil {
				return blobs, fmt.Errorf("pack %s: %w", id.Short(), err)
			}
			off += b.Len
			blobs++
		}
	}
	return blobs, nil
}
