// Package packaging is Lifeboat's Debian package: nfpm.yaml and the
// maintainer scripts, which scripts/release.sh (make deb) turns into a .deb
// with the nFPM library (mkdeb, a module of its own so that nFPM's
// dependencies stay out of Lifeboat's go.mod). It holds no code; its test
// builds the package, checks what it holds and installs it into throwaway
// roots.
package packaging
