package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// machineInfo describes where the numbers came from; results from different
// machines are not comparable.
type machineInfo struct {
	NProc             int      `json:"nproc"`
	MemTotalBytes     int64    `json:"mem_total_bytes"`
	CPUModel          string   `json:"cpu_model"`
	Kernel            string   `json:"kernel"`
	OS                string   `json:"os"`
	Disk              diskInfo `json:"disk"`
	GoVersion         string   `json:"go_version"`
	PGVersion         string   `json:"pg_version"`
	PgBackRestVersion string   `json:"pgbackrest_version,omitempty"`
	LifeboatVersion   string   `json:"lifeboat_version,omitempty"`
	User              string   `json:"user"`
	Root              string   `json:"bench_root"`
}

type diskInfo struct {
	MountPoint string `json:"mount_point"`
	Device     string `json:"device"`
	FSType     string `json:"fs_type"`
	SizeBytes  int64  `json:"size_bytes"`
	FreeBytes  int64  `json:"free_bytes"`
	Rotational string `json:"rotational"` // "0" SSD/virtual, "1" spinning, "" unknown
}

func (h *harness) machine(ctx context.Context) machineInfo {
	m := machineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), User: h.cfg.user, Root: h.cfg.root}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		m.MemTotalBytes = kb * 1024
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Disk = diskOf(h.cfg.root)
	if out, err := exec.CommandContext(ctx, filepath.Join(h.cfg.pgBin, "postgres"), "--version").Output(); err == nil {
		m.PGVersion = strings.TrimSpace(string(out))
	}
	return m
}

// procField returns the value of the first "key : value" line in a /proc file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// diskOf finds the mount holding path (the longest matching mount point in
// /proc/self/mountinfo) and its size.
func diskOf(path string) diskInfo {
	var d diskInfo
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err == nil {
		d.SizeBytes = int64(st.Blocks) * st.Bsize
		d.FreeBytes = int64(st.Bavail) * st.Bsize
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return d
	}
	for _, line := range strings.Split(string(b), "\n") {
		// fields: id parent major:minor root mountpoint options ... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(d.MountPoint) {
			d.MountPoint, d.FSType, d.Device = mp, g[0], g[1]
		}
	}
	if dev := filepath.Base(d.Device); dev != "" {
		if b, err := os.ReadFile(filepath.Join("/sys/block", dev, "queue", "rotational")); err == nil {
			d.Rotational = strings.TrimSpace(string(b))
		}
	}
	return d
}
