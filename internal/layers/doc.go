// Package layers holds no code: its test reads the import graph with
// `go list` and checks the rules docs/ARCHITECTURE.md states, so that the
// document cannot drift from the code.
package layers
