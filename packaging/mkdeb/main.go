// Command mkdeb writes Lifeboat's Debian package from packaging/nfpm.yaml
// with nFPM's deb packager. scripts/release.sh stages what the package
// holds and runs it (make deb); see docs/install.md.
//
//	go run . -config ../nfpm.yaml -out DIR
//
// The configuration's ${NAME}s come from the environment (VERSION, ARCH,
// MAINTAINER, STAGE); its relative paths are relative to its directory. It
// prints the path of the package it wrote.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	config := flag.String("config", "", "nFPM configuration `file`")
	out := flag.String("out", "", "`directory` to write the package into")
	flag.Parse()
	if *config == "" || *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkdeb -config FILE -out DIR")
		os.Exit(2)
	}
	path, err := build(*config, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func build(config, out string) (path string, err error) {
	for _, k := range []string{"VERSION", "ARCH", "MAINTAINER", "STAGE"} {
		if os.Getenv(k) == "" {
			return "", fmt.Errorf("%s is not set (scripts/release.sh sets it)", k)
		}
	}
	if out, err = filepath.Abs(out); err != nil {
		return "", err
	}
	if err := os.Chdir(filepath.Dir(config)); err != nil {
		return "", err
	}
	config = filepath.Base(config)
	cfg, err := nfpm.ParseFileWithEnvMapping(config, os.Getenv)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", config, err)
	}
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	info = nfpm.WithDefaults(info)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	pkg := deb.Default
	path = filepath.Join(out, pkg.ConventionalFileName(info))
	info.Target = path
	// Written under a temporary name and renamed, so a failed build never
	// leaves a truncated package where the real one is expected.
	f, err := os.CreateTemp(out, ".mkdeb-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := pkg.Package(info, f); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
