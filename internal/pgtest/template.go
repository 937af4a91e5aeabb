package pgtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// initdb costs about a second of CPU, most of Start's price and, with dozens of clusters per
// package, much of a test run on two cores. Start therefore runs initdb once per test process for
// each set of initdb options, into a template that is never started, and gives each test a copy:
// a data directory exactly as initdb leaves it, except that every copy gets a system identifier of
// its own, as initdb would have given it (lifeboat tells clusters apart by it).

// templates holds the templates of this test process. root is "" outside RunMain, where Start runs
// initdb for every cluster: nothing would remove the templates at the end.
var templates struct {
	mu   sync.Mutex
	root string
	byID map[templateKey]*template
}

// templateKey is what decides initdb's output: the server binaries and the options given to initdb.
type templateKey struct {
	binDir    string
	checksums bool
}

type template struct {
	once    sync.Once
	dataDir string
	sysID   uint64
	err     error
}

// withTemplates runs fn with templates made in a temporary directory, removed when fn returns
// (and, under a root parent, by the parent too: a test process that panics or times out skips
// its deferred calls).
func withTemplates(fn func() int) int {
	root, err := os.MkdirTemp(os.Getenv(envTemplateDir), "lifeboat-pgtest-templates-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v (each cluster runs initdb instead)\n", err)
		return fn()
	}
	templates.mu.Lock()
	templates.root, templates.byID = root, map[templateKey]*template{}
	templates.mu.Unlock()
	defer func() {
		templates.mu.Lock()
		templates.root, templates.byID = "", nil
		templates.mu.Unlock()
		os.RemoveAll(root)
	}()
	return fn()
}

// initCluster creates the cluster of srv, as srv.Init would, from the template for o when RunMain
// provides templates, and with initdb otherwise.
func initCluster(ctx context.Context, srv *pgbin.Server, o pgbin.InitOptions) error {
	tpl, err := templateFor(ctx, srv.Bin, o.Checksums)
	if err != nil {
		return err
	}
	if tpl == nil {
		return srv.Init(ctx, o)
	}
	if err := copyDataDir(tpl.dataDir, srv.DataDir); err != nil {
		return fmt.Errorf("copy template cluster: %w", err)
	}
	if err := setSystemID(srv.DataDir, tpl.sysID, newSystemID()); err != nil {
		return fmt.Errorf("give the copy of the template cluster its own system identifier: %w", err)
	}
	conf := map[string]string{
		"port":                    strconv.Itoa(srv.Port),
		"listen_addresses":        "",
		"unix_socket_directories": srv.SocketDir,
	}
	return appendConf(srv.DataDir, conf, o.Conf)
}

// templateFor returns the template for these initdb options, running initdb the first time; nil
// when there are no templates.
func templateFor(ctx context.Context, bin pgbin.Bin, checksums bool) (*template, error) {
	templates.mu.Lock()
	if templates.root == "" {
		templates.mu.Unlock()
		return nil, nil
	}
	key := templateKey{binDir: bin.Dir, checksums: checksums}
	tpl := templates.byID[key]
	if tpl == nil {
		tpl = &template{dataDir: filepath.Join(templates.root, fmt.Sprintf("data-%d", len(templates.byID)))}
		templates.byID[key] = tpl
	}
	templates.mu.Unlock()
	tpl.once.Do(func() {
		// Port and socket are written by initCluster into each copy; the template holds initdb's
		// configuration only.
		srv := &pgbin.Server{Bin: bin, DataDir: tpl.dataDir}
		if tpl.err = srv.Init(ctx, pgbin.InitOptions{Superuser: superuser, Checksums: checksums}); tpl.err != nil {
			return
		}
		if tpl.err = stripInitConf(tpl.dataDir); tpl.err != nil {
			return
		}
		tpl.sysID, tpl.err = readSystemID(tpl.dataDir)
	})
	if tpl.err != nil {
		return nil, fmt.Errorf("template cluster: %w", tpl.err)
	}
	return tpl, nil
}

// initConfMarker starts the lines pgbin.Server.Init appends to postgresql.conf.
const initConfMarker = "\n# added by lifeboat (internal/pgbin)\n"

// stripInitConf removes what pgbin.Server.Init appended to the template's postgresql.conf (its
// port and socket), leaving initdb's file.
func stripInitConf(dataDir string) error {
	p := filepath.Join(dataDir, "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	i := strings.LastIndex(string(b), initConfMarker)
	if i < 0 {
		return fmt.Errorf("%s lacks the lines pgbin added (%q)", p, strings.TrimSpace(initConfMarker))
	}
	return os.WriteFile(p, b[:i], 0o600)
}

// appendConf appends settings to postgresql.conf as pgbin.Server.Init does: each map in turn,
// sorted by name, so a later map's values win.
func appendConf(dataDir string, confs ...map[string]string) error {
	var b strings.Builder
	b.WriteString(initConfMarker)
	for _, m := range confs {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := pgbin.CheckSettingName(k); err != nil {
				return err
			}
			if strings.ContainsAny(m[k], "\r\n") {
				return fmt.Errorf("setting %s: the value contains a line break: %q", k, m[k])
			}
			b.WriteString(k + " = " + pgbin.QuoteConf(m[k]) + "\n")
		}
	}
	p := filepath.Join(dataDir, "postgresql.conf")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	return f.Close()
}

// copyDataDir copies a stopped data directory, which holds only directories and regular files,
// with their modes, into dst, which must not exist.
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil {
				return err
			}
			// Mkdir's mode is filtered by the umask; PostgreSQL checks the data directory's.
			return os.Chmod(target, fi.Mode().Perm())
		case d.Type().IsRegular():
			return copyRegular(p, target, fi.Mode().Perm())
		}
		return fmt.Errorf("%s: not a directory or regular file (%v)", p, d.Type())
	})
}

func copyRegular(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range on Linux
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// The system identifier is the first field of pg_control, whose CRC-32C follows ControlFileData,
// and of the long header that starts every WAL segment (the server refuses WAL whose identifier
// differs from pg_control's). Both are little-endian on the machines we test on.
const (
	controlPath      = "global/pg_control"
	walSysIDOffset   = 24     // XLogLongPageHeaderData.xlp_sysid
	walLongHeader    = 0x0002 // XLP_LONG_HEADER in xlp_info
	controlCRCSearch = 1024   // ControlFileData is a few hundred bytes in every version
)

var walSegmentName = regexp.MustCompile(`^[0-9A-F]{24}$`)

func readSystemID(dataDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, controlPath))
	if err != nil {
		return 0, err
	}
	if len(b) < 8 {
		return 0, fmt.Errorf("%s: %d bytes is too short", controlPath, len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}

// lastSysID keeps the identifiers newSystemID makes in this process distinct even when two copies
// are made within one tick of the clock.
var lastSysID struct {
	mu sync.Mutex
	id uint64
}

// newSystemID makes an identifier as initdb does: the seconds and microseconds of now, the low bits
// of the nanoseconds standing in for initdb's process id.
func newSystemID() uint64 {
	now := time.Now()
	id := uint64(now.Unix())<<32 | uint64(now.Nanosecond()/1000)<<12 | uint64(now.Nanosecond()&0xFFF)
	lastSysID.mu.Lock()
	defer lastSysID.mu.Unlock()
	if id <= lastSysID.id {
		id = lastSysID.id + 1
	}
	lastSysID.id = id
	return id
}

// setSystemID replaces the system identifier old with id in pg_control (updating its CRC) and in
// the first page of every WAL segment in pg_wal. It fails rather than guess when a file does not
// hold old where it should.
func setSystemID(dataDir string, old, id uint64) error {
	cp := filepath.Join(dataDir, controlPath)
	b, err := os.ReadFile(cp)
	if err != nil {
		return err
	}
	crcOff, err := controlCRCOffset(b)
	if err != nil {
		return fmt.Errorf("%s: %w", cp, err)
	}
	if got := binary.LittleEndian.Uint64(b); got != old {
		return fmt.Errorf("%s: system identifier %d, want the template's %d", cp, got, old)
	}
	binary.LittleEndian.PutUint64(b, id)
	binary.LittleEndian.PutUint32(b[crcOff:], crc32.Checksum(b[:crcOff], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		return err
	}

	walDir := filepath.Join(dataDir, "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return err
	}
	patched := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !walSegmentName.MatchString(e.Name()) {
			continue
		}
		if err := setSegmentSystemID(filepath.Join(walDir, e.Name()), old, id); err != nil {
			return err
		}
		patched++
	}
	if patched == 0 {
		return fmt.Errorf("%s holds no WAL segment", walDir)
	}
	return nil
}

func setSegmentSystemID(path string, old, id uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [walSysIDOffset + 8]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	info := binary.LittleEndian.Uint16(hdr[2:])
	if got := binary.LittleEndian.Uint64(hdr[walSysIDOffset:]); info&walLongHeader == 0 || got != old {
		return fmt.Errorf("%s: first page has xlp_info %#04x and system identifier %d, want a long header with the template's %d",
			path, info, got, old)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	if _, err := f.WriteAt(b[:], walSysIDOffset); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// controlCRCOffset finds the CRC-32C that ends ControlFileData: the first 4-aligned offset where
// the stored value is the CRC of every byte before it (the layout differs between major versions;
// internal/postgres reads pg_control the same way).
func controlCRCOffset(b []byte) (int, error) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	var crc uint32
	for off := 0; off+4 <= min(len(b), controlCRCSearch); off += 4 {
		if off >= 16 && crc == binary.LittleEndian.Uint32(b[off:]) {
			return off, nil
		}
		crc = crc32.Update(crc, tab, b[off:off+4])
	}
	return 0, errors.New("no valid CRC found in the first bytes: not a pg_control file, or corrupt")
}
